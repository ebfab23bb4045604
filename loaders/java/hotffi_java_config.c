/*
 * hotffi_java_config.c -- parsing a Java runtime's configuration,
 * lua-resty-ffi's "Class,method,cfg" with an optional classpath first, and
 * the JVM's options, split as a shell splits words.
 *
 *   [classpath=DIR:JAR...,]pkg.Class[?][,method[,cfg]]
 *
 * Without a "classpath=" part, $CLASSPATH (as the worker sees it: nginx
 * passes it only with `env CLASSPATH;`) is the classpath.  A '?' after
 * the class loads it through a fresh class loader.  The method defaults to
 * "init".  cfg is everything after the next comma, commas included, and is
 * NULL when there is none.
 */

#include "hotffi_java.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define HOTFFI_JAVA_DEFAULT_METHOD  "init"
#define HOTFFI_JAVA_CP              "classpath="


/* thread: init.  text: borrowed, and must outlive c: c->cfg points into it */
int
hotffi_java_cfg_parse(hotffi_java_cfg_t *c, const char *text, char *err,
    size_t errlen)
{
    char        *p, *cls;
    size_t       cplen, clen, mlen, size, i;
    const char  *cp, *comma, *method, *env;

    memset(c, 0, sizeof(hotffi_java_cfg_t));

    if (text == NULL) {
        (void) snprintf(err, errlen, "no configuration: "
                        "\"[classpath=CP,]Class[?],method,cfg\" expected");
        return HOTFFI_JAVA_ERROR;
    }

    if (strncmp(text, HOTFFI_JAVA_CP, sizeof(HOTFFI_JAVA_CP) - 1) == 0) {
        cp = text + sizeof(HOTFFI_JAVA_CP) - 1;
        comma = strchr(cp, ',');
        if (comma == NULL) {
            (void) snprintf(err, errlen, "no class after \"%s\": "
                            "\"[classpath=CP,]Class[?],method,cfg\" "
                            "expected", text);
            return HOTFFI_JAVA_ERROR;
        }
        cplen = (size_t) (comma - cp);
        text = comma + 1;

    } else {
        env = getenv("CLASSPATH");
        cp = env ? env : "";
        cplen = strlen(cp);
    }

    comma = strchr(text, ',');
    clen = comma ? (size_t) (comma - text) : strlen(text);

    method = comma ? comma + 1 : NULL;
    comma = method ? strchr(method, ',') : NULL;
    mlen = method == NULL ? 0
           : comma ? (size_t) (comma - method) : strlen(method);

    /* the rest is borrowed: its C address is what lua-resty-ffi passed */
    c->cfg = comma ? comma + 1 : NULL;

    if (mlen == 0) {
        method = HOTFFI_JAVA_DEFAULT_METHOD;
        mlen = sizeof(HOTFFI_JAVA_DEFAULT_METHOD) - 1;
    }

    /* classpath, class, method, "class,method", each with its NUL */
    size = (cplen + 1) + (clen + 1) + (mlen + 1) + (clen + mlen + 2);

    c->buf = malloc(size);
    if (c->buf == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        return HOTFFI_JAVA_ERROR;
    }

    p = c->buf;

    memcpy(p, cp, cplen);
    p[cplen] = '\0';
    c->classpath = p;
    p += cplen + 1;

    cls = p;
    memcpy(cls, text, clen);
    cls[clen] = '\0';
    p += clen + 1;

    memcpy(p, method, mlen);
    p[mlen] = '\0';
    c->method = p;
    p += mlen + 1;

    c->name = p;
    memcpy(p, text, clen);
    p[clen] = ',';
    memcpy(p + clen + 1, method, mlen);
    p[clen + 1 + mlen] = '\0';

    if (clen && cls[clen - 1] == '?') {
        cls[--clen] = '\0';
        c->reload = 1;
    }

    c->cls = cls;

    for (i = 0; i < clen; i++) {
        if (cls[i] == '/' || cls[i] == ' ' || cls[i] == '?') {
            break;
        }
    }

    if (clen == 0 || i < clen || cls[0] == '.' || cls[clen - 1] == '.') {
        (void) snprintf(err, errlen, "bad class name in \"%s\": "
                        "\"[classpath=CP,]Class[?],method,cfg\" expected",
                        c->name);
        hotffi_java_cfg_free(c);
        return HOTFFI_JAVA_ERROR;
    }

    return HOTFFI_JAVA_OK;
}


/* thread: any.  Frees what parse allocated. */
void
hotffi_java_cfg_free(hotffi_java_cfg_t *c)
{
    free(c->buf);
    c->buf = NULL;
}


static void
hotffi_java_words_free(char **w, int n)
{
    while (n > 0) {
        free(w[--n]);
    }

    free(w);
}


/* thread: any.  See hotffi_java.h. */
char **
hotffi_java_words(const char *text, int *n, char *err, size_t errlen)
{
    int          count;
    char       **w, **more, *word;
    char         quote;
    size_t       len, cap;
    const char  *s;

    *n = 0;
    count = 0;
    cap = 0;
    w = NULL;

    s = text ? text : "";

    for ( ;; ) {
        while (*s == ' ' || *s == '\t' || *s == '\n') {
            s++;
        }

        if (*s == '\0') {
            break;
        }

        /* a word is never longer than what is left of text */
        word = malloc(strlen(s) + 1);
        if (word == NULL) {
            goto nomem;
        }

        len = 0;
        quote = 0;

        while (*s && (quote || (*s != ' ' && *s != '\t' && *s != '\n'))) {
            if (quote == '\'' ) {
                if (*s == '\'') {
                    quote = 0;
                } else {
                    word[len++] = *s;
                }

            } else if (*s == '\\' && s[1] != '\0'
                       && (quote == 0 || s[1] == '"' || s[1] == '\\'))
            {
                word[len++] = *++s;

            } else if (quote == '"' && *s == '"') {
                quote = 0;

            } else if (quote == 0 && (*s == '\'' || *s == '"')) {
                quote = *s;

            } else {
                word[len++] = *s;
            }

            s++;
        }

        word[len] = '\0';

        if (quote) {
            free(word);
            hotffi_java_words_free(w, count);
            (void) snprintf(err, errlen, "unclosed %c in \"%s\"", quote,
                            text);
            return NULL;
        }

        if ((size_t) count == cap) {
            cap = cap ? cap * 2 : 8;
            more = realloc(w, cap * sizeof(char *));
            if (more == NULL) {
                free(word);
                goto nomem;
            }
            w = more;
        }

        w[count++] = word;
    }

    if (w == NULL) {
        w = malloc(sizeof(char *));
        if (w == NULL) {
            goto nomem;
        }
    }

    *n = count;
    return w;

nomem:

    hotffi_java_words_free(w, count);
    (void) snprintf(err, errlen, "out of memory");
    return NULL;
}
