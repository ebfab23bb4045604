/*
 * hotffi_py_config.c -- parsing lua-resty-ffi's "module,function,cfg"
 * configuration of a Python runtime.
 *
 *   [venv=path;][dir/]module[?][,function[,cfg]]
 *
 * "venv=path;" first runs the runtime in a sub-interpreter of its own whose
 * sys.path is that virtualenv's (hotffi_py_sub.c); the path runs to the
 * first ';' and may hold commas.  Without it, the text is lua-resty-ffi's.
 * dir (before the last '/' of the first field) is put on sys.path; a
 * relative dir is taken from the worker's current directory at load time
 * and made absolute then.  A '?' after the module re-reads its file.  The
 * function defaults to "init".  cfg is everything after the second comma,
 * commas included, and is NULL when there is no second comma.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>



#define HOTFFI_PY_DEFAULT_FUNCTION  "init"


/*
 * thread: event loop.  GIL: any.
 * text: borrowed, and must outlive c: c->cfg points into it.
 */
int
hotffi_py_cfg_parse(hotffi_py_cfg_t *c, const char *text, char *err,
    size_t errlen)
{
    char        *p, *module, *function, *slash, *dir;
    size_t       mlen, flen, fnlen, dlen, cwdlen, vlen, size;
    const char  *comma, *comma2, *venv, *semi;
    char         cwd[PATH_MAX];

    memset(c, 0, sizeof(hotffi_py_cfg_t));

    if (text == NULL) {
        (void) snprintf(err, errlen, "no configuration: "
                        "\"[dir/]module[?],function,cfg\" expected");
        return HOTFFI_PY_ERROR;
    }

    venv = NULL;
    vlen = 0;

    if (strncmp(text, "venv=", 5) == 0) {
        venv = text + 5;
        semi = strchr(venv, ';');

        if (semi == NULL || semi == venv) {
            (void) snprintf(err, errlen, "bad venv in \"%s\": "
                            "\"venv=/path/to/venv;[dir/]module[?],function,"
                            "cfg\" expected", text);
            return HOTFFI_PY_ERROR;
        }

        vlen = (size_t) (semi - venv);
        text = semi + 1;
    }

    comma = strchr(text, ',');
    mlen = comma ? (size_t) (comma - text) : strlen(text);

    comma2 = comma ? strchr(comma + 1, ',') : NULL;
    flen = comma == NULL ? 0
           : comma2 ? (size_t) (comma2 - comma - 1) : strlen(comma + 1);

    /* the rest is borrowed: its C address is what lua-resty-ffi passed */
    c->cfg = comma2 ? comma2 + 1 : NULL;

    cwdlen = 0;

    if (mlen && text[0] != '/' && memchr(text, '/', mlen)) {
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            (void) snprintf(err, errlen, "getcwd() failed for the relative "
                            "directory in \"%.*s\"", (int) mlen, text);
            return HOTFFI_PY_ERROR;
        }

        cwdlen = strlen(cwd) + 1;
    }

    fnlen = flen ? flen : sizeof(HOTFFI_PY_DEFAULT_FUNCTION) - 1;

    /* module, function, the name "module,function", dir and venv, each
     * with NUL */
    size = (mlen + 1) + (fnlen + 1) + (mlen + 1 + fnlen + 1)
           + (cwdlen + mlen + 1) + (vlen + 1);

    c->buf = malloc(size);
    if (c->buf == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        return HOTFFI_PY_ERROR;
    }

    p = c->buf;

    module = p;
    memcpy(module, text, mlen);
    module[mlen] = '\0';
    p += mlen + 1;

    function = p;

    if (flen) {
        memcpy(function, comma + 1, flen);
        function[flen] = '\0';
        p += flen + 1;

    } else {
        memcpy(function, HOTFFI_PY_DEFAULT_FUNCTION,
               sizeof(HOTFFI_PY_DEFAULT_FUNCTION));
        p += sizeof(HOTFFI_PY_DEFAULT_FUNCTION);
    }

    c->name = p;
    p += sprintf(p, "%s,%s", module, function) + 1;

    c->function = function;

    if (venv != NULL) {
        memcpy(p, venv, vlen);
        p[vlen] = '\0';
        c->venv = p;
        p += vlen + 1;
    }

    /* "dir/module?": the directory, then the module name and its '?' */
    slash = strrchr(module, '/');

    if (slash) {
        dir = p;
        dlen = slash == module ? 1 : (size_t) (slash - module);

        if (cwdlen) {
            p += sprintf(p, "%s/", cwd);
        }

        memcpy(p, module, dlen);
        p[dlen] = '\0';
        c->dir = dir;

        module = slash + 1;
    }

    mlen = strlen(module);

    if (mlen && module[mlen - 1] == '?') {
        module[--mlen] = '\0';
        c->reload = 1;
    }

    if (mlen == 0 || module[0] == '.' || module[mlen - 1] == '.') {
        (void) snprintf(err, errlen, "bad module name in \"%s\": "
                        "\"[dir/]module[?],function,cfg\" expected", c->name);
        hotffi_py_cfg_free(c);
        return HOTFFI_PY_ERROR;
    }

    c->module = module;

    return HOTFFI_PY_OK;
}


/* thread: event loop.  GIL: any.  Frees what parse allocated. */
void
hotffi_py_cfg_free(hotffi_py_cfg_t *c)
{
    free(c->buf);
    c->buf = NULL;
}
