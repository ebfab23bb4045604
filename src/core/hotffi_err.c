/*
 * hotffi_err.c -- error text that keeps its end (see hotffi_err.h).
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi_err.h"


/* thread: any */
void
hotffi_err_tail(char *buf, size_t size, const char *text, size_t len)
{
    size_t             skip;
    static const char  cut[] = "...";

    if (len < size) {
        memcpy(buf, text, len);
        buf[len] = '\0';
        return;
    }

    /* room for the cut mark and the NUL (sizeof counts it) */
    skip = len - (size - sizeof(cut));

    /* never begin inside a UTF-8 sequence */
    while (skip < len && ((unsigned char) text[skip] & 0xc0) == 0x80) {
        skip++;
    }

    memcpy(buf, cut, sizeof(cut) - 1);
    memcpy(buf + sizeof(cut) - 1, text + skip, len - skip);
    buf[sizeof(cut) - 1 + len - skip] = '\0';
}


/* thread: any */
void
hotffi_err_vformat(char *buf, size_t size, const char *fmt, va_list args)
{
    int       n;
    char     *full;
    va_list   again;

    va_copy(again, args);
    n = vsnprintf(buf, size, fmt, args);

    /* the whole text, to keep its end; short of memory, its start stays */
    if (n >= 0 && (size_t) n >= size) {
        full = malloc((size_t) n + 1);

        if (full) {
            (void) vsnprintf(full, (size_t) n + 1, fmt, again);
            hotffi_err_tail(buf, size, full, (size_t) n);
            free(full);
        }
    }

    va_end(again);
}


/* thread: any */
void
hotffi_err_format(char *buf, size_t size, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    hotffi_err_vformat(buf, size, fmt, args);
    va_end(args);
}
