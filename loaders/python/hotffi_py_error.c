/*
 * hotffi_py_error.c -- Python exceptions as text: for the caller of a
 * failed call, for load's error message and for nginx's error log.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>


typedef void (*hotffi_py_init_error_pt)(void *tq, const char *msg);


/* hotffi_init_error(), NULL on a host without it */
static pthread_once_t           hotffi_py_error_once = PTHREAD_ONCE_INIT;
static hotffi_py_init_error_pt  hotffi_py_init_error;


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


/* thread: any.  GIL: held. */
PyObject *
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


/* thread: any.  GIL: any. */
void
hotffi_py_error_tail(char *buf, size_t size, const char *text, size_t len)
{
    size_t             skip;
    static const char  cut[] = "...\n";

    /* a traceback ends with a newline: the message does not */
    while (len && text[len - 1] == '\n') {
        len--;
    }

    if (len < size) {
        memcpy(buf, text, len);
        buf[len] = '\0';
        return;
    }

    /* the end of a traceback says what went wrong: keep that */
    skip = len - (size - sizeof(cut));

    while (skip < len && ((unsigned char) text[skip] & 0xc0) == 0x80) {
        skip++;
    }

    (void) snprintf(buf, size, "%s%.*s", cut, (int) (len - skip),
                    text + skip);
}


/* thread: any.  GIL: held. */
void
hotffi_py_error_format(char *buf, size_t size)
{
    PyObject  *text, *bytes;

    text = hotffi_py_error_text();
    bytes = NULL;

    if (text != NULL) {
        /* lone surrogates (from undecodable bytes) must not fail this */
        bytes = PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace");
    }

    if (bytes == NULL) {
        PyErr_Clear();
        (void) snprintf(buf, size, "unknown Python error");

    } else {
        hotffi_py_error_tail(buf, size, PyBytes_AS_STRING(bytes),
                             (size_t) PyBytes_GET_SIZE(bytes));
    }

    Py_XDECREF(bytes);
    Py_XDECREF(text);
}


/* thread: any, once */
static void
hotffi_py_error_lookup(void)
{
    /*
     * Looked up rather than linked: a host without hotffi_init_error() (an
     * older hotffi, lua-resty-ffi) still loads this library.
     */
    *(void **) &hotffi_py_init_error = dlsym(RTLD_DEFAULT,
                                             "hotffi_init_error");
}


/* thread: inside libffi_init() or libffi_retire().  GIL: any. */
void
hotffi_py_error_pass(void *tq, const char *msg)
{
    /* libffi_init() and libffi_retire() run on different threads */
    (void) pthread_once(&hotffi_py_error_once, hotffi_py_error_lookup);

    if (hotffi_py_init_error != NULL) {
        hotffi_py_init_error(tq, msg);
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
