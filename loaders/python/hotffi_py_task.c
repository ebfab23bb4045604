/*
 * hotffi_py_task.c -- hotffi.Task: one call handed to Python, and the ways
 * a call is answered from Python.
 *
 * A Task owns its hotffi task from poll until it is answered.  Its request
 * is copied into bytes at poll, so that it stays valid after the answer.
 * A Task garbage-collected unanswered answers itself (rc 2): a forgotten
 * task fails its call instead of leaving it to time out.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"


typedef struct {
    PyObject_HEAD
    void      *task;      /* hotffi's task, ours from poll until answered
                             (then NULL: hotffi's again) */
    PyObject  *req;       /* bytes, a copy: it outlives the answer */
} hotffi_py_task_obj_t;


/* thread: any.  GIL: any. */
void
hotffi_py_answer_text(void *task, int rc, const char *text, size_t len)
{
    char  *rsp;

    if (text == NULL) {
        ngx_http_lua_ffi_respond(task, rc, NULL, 0);
        return;
    }

    /* one spare byte: an empty answer is "", since rsp_len 0 means a C
     * string, and NULL would be nil */
    rsp = malloc(len + 1);
    if (rsp == NULL) {
        ngx_http_lua_ffi_respond(task, rc, NULL, 0);
        return;
    }

    memcpy(rsp, text, len);
    rsp[len] = '\0';

    /* rsp: ownership passes to hotffi */
    ngx_http_lua_ffi_respond(task, rc, rsp, (int) len);
}


/* thread: any.  GIL: held. */
int
hotffi_py_answer(void *task, int rc, PyObject *data)
{
    char       *rsp;
    Py_buffer   view;
    Py_ssize_t  len;
    const char  *bytes;

    if (data == Py_None) {
        ngx_http_lua_ffi_respond(task, rc, NULL, 0);
        return HOTFFI_PY_OK;
    }

    if (PyUnicode_Check(data)) {
        bytes = PyUnicode_AsUTF8AndSize(data, &len);
        if (bytes == NULL) {
            return HOTFFI_PY_ERROR;
        }

        view.obj = NULL;

    } else if (PyObject_CheckBuffer(data)) {
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) {
            return HOTFFI_PY_ERROR;
        }

        bytes = view.buf;
        len = view.len;

    } else {
        PyErr_Format(PyExc_TypeError, "an answer must be bytes, str or "
                     "None, not %.200s", Py_TYPE(data)->tp_name);
        return HOTFFI_PY_ERROR;
    }

    rsp = NULL;

    if (len > INT_MAX - 1) {
        PyErr_Format(PyExc_OverflowError, "an answer of %zd bytes is over "
                     "the ABI's limit of 2 GiB", len);

    } else {
        rsp = malloc((size_t) len + 1);

        if (rsp == NULL) {
            PyErr_NoMemory();

        } else {
            memcpy(rsp, bytes, (size_t) len);
            rsp[len] = '\0';
        }
    }

    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }

    if (rsp == NULL) {
        return HOTFFI_PY_ERROR;
    }

    /* rsp: ownership passes to hotffi */
    ngx_http_lua_ffi_respond(task, rc, rsp, (int) len);

    return HOTFFI_PY_OK;
}


/* thread: any.  GIL: held.  task: ownership passes to the new Task. */
PyObject *
hotffi_py_task_new(void *task)
{
    int                    len;
    char                  *req;
    hotffi_py_task_obj_t  *t;

    t = PyObject_New(hotffi_py_task_obj_t, &hotffi_py_task_type);
    if (t == NULL) {
        hotffi_py_answer_text(task, HOTFFI_PY_RC_EXCEPTION, "MemoryError",
                              11);
        return NULL;
    }

    t->task = task;

    req = ngx_http_lua_ffi_get_req(task, &len);
    t->req = PyBytes_FromStringAndSize(req, len);

    if (t->req == NULL) {
        /* dealloc answers the task */
        Py_DECREF(t);
        return NULL;
    }

    return (PyObject *) t;
}


/* thread: any.  GIL: held.  An unanswered task answers itself. */
static void
hotffi_py_task_dealloc(PyObject *self)
{
    hotffi_py_task_obj_t  *t = (hotffi_py_task_obj_t *) self;
    static const char      msg[] = "the Python runtime dropped the task "
                                   "without answering it";

    if (t->task != NULL) {
        hotffi_py_answer_text(t->task, HOTFFI_PY_RC_DROPPED, msg,
                              sizeof(msg) - 1);
    }

    Py_XDECREF(t->req);
    PyObject_Free(self);
}


/* thread: the task's.  GIL: held.  Task.respond(rc=0, data=None) */
static PyObject *
hotffi_py_task_respond(PyObject *self, PyObject *args, PyObject *kwargs)
{
    int                    rc;
    PyObject              *data;
    hotffi_py_task_obj_t  *t = (hotffi_py_task_obj_t *) self;
    static char           *kwlist[] = { "rc", "data", NULL };

    rc = 0;
    data = Py_None;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|iO:respond", kwlist,
                                     &rc, &data))
    {
        return NULL;
    }

    if (t->task == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "task already answered");
        return NULL;
    }

    if (hotffi_py_answer(t->task, rc, data) != HOTFFI_PY_OK) {
        return NULL;
    }

    /* hotffi's now: touching it again would be a use after free */
    t->task = NULL;

    return Py_NewRef(Py_None);
}


/* thread: any.  GIL: held.  Task.req */
static PyObject *
hotffi_py_task_get_req(PyObject *self, void *closure)
{
    return Py_NewRef(((hotffi_py_task_obj_t *) self)->req);
}


/* thread: the task's.  GIL: held.  Task.cancelled */
static PyObject *
hotffi_py_task_get_cancelled(PyObject *self, void *closure)
{
    hotffi_py_task_obj_t  *t = (hotffi_py_task_obj_t *) self;

    if (t->task == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "task already answered");
        return NULL;
    }

    /* only hotffi has it: lua-resty-ffi, say, does not */
    return PyBool_FromLong(hotffi_py_host.task_cancelled != NULL
                           && hotffi_py_host.task_cancelled(t->task));
}


/* thread: any.  GIL: held.  Task.answered */
static PyObject *
hotffi_py_task_get_answered(PyObject *self, void *closure)
{
    return PyBool_FromLong(((hotffi_py_task_obj_t *) self)->task == NULL);
}


/* thread: any.  GIL: held. */
static PyObject *
hotffi_py_task_repr(PyObject *self)
{
    hotffi_py_task_obj_t  *t = (hotffi_py_task_obj_t *) self;

    return PyUnicode_FromFormat("<hotffi.Task %zd bytes%s>",
                                PyBytes_GET_SIZE(t->req),
                                t->task ? "" : ", answered");
}


static PyMethodDef  hotffi_py_task_methods[] = {
    { "respond", (PyCFunction) (void (*)(void)) hotffi_py_task_respond,
      METH_VARARGS | METH_KEYWORDS,
      "respond(rc=0, data=None)\n--\n\n"
      "Answers the call: rc 0 is success; data is bytes, str (sent as "
      "UTF-8) or None (no payload).  Exactly once per task." },
    { NULL, NULL, 0, NULL }
};


static PyGetSetDef  hotffi_py_task_getset[] = {
    { "req", hotffi_py_task_get_req, NULL,
      "The request, as bytes.", NULL },
    { "cancelled", hotffi_py_task_get_cancelled, NULL,
      "True once the caller gave up (timeout, request gone); the task "
      "must still be answered.", NULL },
    { "answered", hotffi_py_task_get_answered, NULL,
      "True once respond() was called.", NULL },
    { NULL, NULL, NULL, NULL, NULL }
};


PyTypeObject  hotffi_py_task_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hotffi.Task",
    .tp_doc = "One call to answer, from hotffi.poll().",
    .tp_basicsize = sizeof(hotffi_py_task_obj_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = hotffi_py_task_dealloc,
    .tp_repr = hotffi_py_task_repr,
    .tp_methods = hotffi_py_task_methods,
    .tp_getset = hotffi_py_task_getset,
};


/* thread: any.  GIL: held.  Readies the type. */
int
hotffi_py_task_ready(void)
{
    return PyType_Ready(&hotffi_py_task_type) == 0 ? HOTFFI_PY_OK
                                                   : HOTFFI_PY_ERROR;
}
