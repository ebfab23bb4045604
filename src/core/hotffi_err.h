/*
 * hotffi_err.h -- one size and one truncation rule for the core's error
 * text.
 *
 * DESIGN
 * An error text (libffi_init()'s or libffi_retire()'s message, often a
 * Python traceback, and every message built around one) holds at most
 * HOTFFI_ERR_MAX bytes with its NUL, in every buffer of the core and of the
 * hosts that read it (src/nginx, LOAD_ERR_BUF_SIZE in lua/resty/hotffi.lua).
 * A longer text keeps its end -- where a traceback says what went wrong --
 * after a leading "...", cut at a UTF-8 character boundary.
 */

#ifndef HOTFFI_ERR_H
#define HOTFFI_ERR_H


#include <stdarg.h>
#include <stddef.h>

#include "hotffi_core.h"


#define HOTFFI_ERR_MAX  4096


/*
 * thread: any.  Copies len bytes of text (borrowed) into buf (size >= 4
 * bytes), NUL-terminated, keeping the end when it does not fit.
 */
void hotffi_err_tail(char *buf, size_t size, const char *text, size_t len);

/*
 * thread: any.  snprintf() into buf (size >= 4 bytes) keeping the end
 * when the text does not fit.  The arguments must not point into buf.
 */
void hotffi_err_format(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* thread: any.  The same with a va_list, which it uses up. */
void hotffi_err_vformat(char *buf, size_t size, const char *fmt,
    va_list args) __attribute__((format(printf, 3, 0)));


#endif /* HOTFFI_ERR_H */
