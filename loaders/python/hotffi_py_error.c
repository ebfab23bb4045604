/*
 * hotffi_py_error.c -- Python exceptions as text: for the caller of a
 * failed call, for load's error message and for nginx's error log.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <stdio.h>
#include <string.h>

/* last: the core's headers declare what follows them hidden */
#include "hotffi_err.h"


/*
 * thread: any.  GIL: held.
 * "Type: message" when the traceback module cannot help.
 */
static PyObject *
hotffi_py_error_plain(PyObject *type, PyObject *value)
{
    PyObject  *text;

    text = PyUnicode_FromFormat("%s: %S",
                                type ? ((PyTypeObject *) type)->tp_name
                                     : "error",
                                value ? value : Py_None);
    if (text == NULL) {
        PyErr_Clear();
    }

    return text;
}


/*
 * thread: any.  GIL: held.  New str with the current exception formatted
 * as Python prints it; the exception is cleared.  NULL only if even that
 * failed, with no exception set.
 */
static PyObject *
hotffi_py_error_text(void)
{
    PyObject  *type, *value, *tb, *mod, *lines, *sep, *text;

    PyErr_Fetch(&type, &value, &tb);

    if (type == NULL) {
        return PyUnicode_FromString("unknown error (no Python exception)");
    }

    PyErr_NormalizeException(&type, &value, &tb);

    if (tb != NULL && value != NULL) {
        (void) PyException_SetTraceback(value, tb);
    }

    text = NULL;
    lines = NULL;
    sep = NULL;

    mod = PyImport_ImportModule("traceback");

    if (mod != NULL) {
        lines = PyObject_CallMethod(mod, "format_exception", "OOO", type,
                                    value ? value : Py_None,
                                    tb ? tb : Py_None);
    }

    if (lines != NULL) {
        sep = PyUnicode_FromString("");
    }

    if (sep != NULL) {
        text = PyUnicode_Join(sep, lines);
    }

    if (text == NULL) {
        PyErr_Clear();
        text = hotffi_py_error_plain(type, value);
    }

    Py_XDECREF(sep);
    Py_XDECREF(lines);
    Py_XDECREF(mod);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);

    return text;
}


/* thread: any.  GIL: held. */
PyObject *
hotffi_py_error_bytes(size_t *len)
{
    size_t       n;
    PyObject    *text, *bytes;
    const char  *p;

    text = hotffi_py_error_text();
    if (text == NULL) {
        return NULL;
    }

    /* lone surrogates (from undecodable bytes) must not fail this */
    bytes = PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace");
    Py_DECREF(text);

    if (bytes == NULL) {
        PyErr_Clear();
        return NULL;
    }

    p = PyBytes_AS_STRING(bytes);
    n = (size_t) PyBytes_GET_SIZE(bytes);

    /* a traceback ends with a newline: the message does not */
    while (n && p[n - 1] == '\n') {
        n--;
    }

    *len = n;

    return bytes;
}


/* thread: any.  GIL: held. */
void
hotffi_py_error_format(char *buf, size_t size)
{
    size_t     len;
    PyObject  *bytes;

    bytes = hotffi_py_error_bytes(&len);

    if (bytes == NULL) {
        (void) snprintf(buf, size, "unknown Python error");
        return;
    }

    hotffi_err_tail(buf, size, PyBytes_AS_STRING(bytes), len);
    Py_DECREF(bytes);
}


/* thread: inside libffi_init() or libffi_retire().  GIL: any. */
void
hotffi_py_error_pass(void *tq, const char *msg)
{
    if (hotffi_py_host.init_error != NULL) {
        hotffi_py_host.init_error(tq, msg);
    }
}


/* thread: event loop, inside libffi_init().  GIL: any. */
void
hotffi_py_error_report(void *tq, const char *name, const char *msg)
{
    /*
     * nginx points stderr at its error log, so this is where the traceback
     * of a failed load ends up, whatever the host.  One call, one write.
     */
    (void) fprintf(stderr, "hotffi_python: runtime \"%s\" failed to load: "
                   "%s\n", name, msg);

    /* and into load's error message */
    hotffi_py_error_pass(tq, msg);
}
