/*
 * hotffi_py_sub.c -- the sub-interpreter of a runtime that names a
 * virtualenv ("venv=/srv/venvs/a;handlers,init,cfg"): its sys.path is the
 * standard library and that venv's site-packages, so two runtimes of one
 * worker can import two versions of the same package.
 *
 * DESIGN
 * Each version of such a runtime gets a new sub-interpreter
 * (Py_NewInterpreter), made in libffi_init() and ended once nothing of
 * that version can run in it any more: after libffi_fini() joined its
 * threads, or, when a reload replaced it, after the next version started
 * (the old module and its interpreter are kept for a rollback until then:
 * hotffi_py_retire.c).  A reload therefore imports everything afresh,
 * packages of the venv included.
 *
 * The interpreter's first thread state (ts0) is kept, unused, until the
 * end: the `threading` module of the interpreter takes the thread that
 * first imported it (ts0, in setup) for its main thread, whose state must
 * be alive when the interpreter ends.  Py_EndInterpreter() then runs on
 * ts0, swapped in on the thread that ends it, which first becomes
 * threading's main thread (its ident): else threading._shutdown() would
 * wait for the main thread's state to go, which is the one running it.
 * Py_EndInterpreter() aborts
 * the process when another thread state of the interpreter is alive: a
 * thread nobody joined (a daemon thread a handler started) leaves the
 * interpreter as it is, with a line in the error log, rather than that.
 *
 * Extension modules: CPython 3.11 cannot tell before it runs an extension
 * module's init whether the module supports sub-interpreters.  One with
 * single-phase initialisation (PyModule_Create() in PyInit_*) keeps C
 * globals that belong to the first interpreter that imported it, which
 * may crash another one, or the process once that interpreter ends.  So
 * in a venv runtime's interpreter, the loader wraps the import of
 * extension modules from anywhere but CPython's own lib-dynload:
 *   - before: a file whose dynamic symbols do not even reference
 *     PyModuleDef_Init(), without which there is no multi-phase
 *     initialisation, fails its import with an ImportError that says so,
 *     and its init never runs;
 *   - after: one that references it but was made by single-phase
 *     initialisation all the same fails its import with that ImportError,
 *     before any code of the runtime can use it.  Its init has run once,
 *     in this interpreter, and CPython keeps what it made; nothing else
 *     of it runs.
 *
 * locks: none of its own.  A sub is owned by one holder at a time
 * (hotffi_py.h); the GIL, shared by every interpreter on 3.11, orders the
 * rest.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


struct hotffi_py_sub_s {
    PyInterpreterState  *interp;
    PyThreadState       *ts0;      /* its first thread state, see above */
    char                *venv;     /* ours: the venv's absolute path */
};


/*
 * Run in the new interpreter, with the GIL: what `python -m venv`'s
 * interpreter would have on sys.path and in sys.prefix, and the guard
 * against single-phase extension modules.
 */
static const char  hotffi_py_sub_src[] =
    "import os, sys, site, threading\n"
    "import _frozen_importlib_external as _external\n"
    "import hotffi\n"
    "\n"
    "def setup(venv):\n"
    "    version = 'python%d.%d' % sys.version_info[:2]\n"
    "    packages = os.path.join(venv, 'lib', version, 'site-packages')\n"
    "    system = False\n"
    "    with open(os.path.join(venv, 'pyvenv.cfg'), encoding='utf-8',\n"
    "              errors='replace') as f:\n"
    "        for line in f:\n"
    "            key, eq, value = line.partition('=')\n"
    "            if eq and key.strip().lower() == \\\n"
    "                    'include-system-site-packages':\n"
    "                system = value.strip().lower() == 'true'\n"
    "    dynload = os.path.join(sys.base_exec_prefix, sys.platlibdir,\n"
    "                           version, 'lib-dynload')\n"
    "    # what site added for the installation: Debian's dist-packages\n"
    "    # and the user's site-packages\n"
    "    sites = set(site.getsitepackages())\n"
    "    sites.add(site.getusersitepackages())\n"
    "    others = [p for p in sys.path if p in sites]\n"
    "    sys.path[:] = [p for p in sys.path if p not in sites]\n"
    "    sys.prefix = sys.exec_prefix = venv\n"
    "    site.PREFIXES[:] = [venv]\n"
    "    site.ENABLE_USER_SITE = False\n"
    "    python = os.path.join(venv, 'bin', 'python')\n"
    "    if os.path.exists(python):\n"
    "        sys.executable = python\n"
    "    site.addsitedir(packages)\n"
    "    if system:\n"
    "        sys.path.extend(p for p in others if p not in sys.path)\n"
    "\n"
    "    loader = _external.ExtensionFileLoader\n"
    "    create = loader.create_module\n"
    "\n"
    "    def refuse(spec, origin):\n"
    "        return ImportError(\n"
    "            f'{spec.name} ({origin}) is an extension module with '\n"
    "            'single-phase initialisation, which is not safe in a '\n"
    "            'sub-interpreter: hotffi refuses it in a venv= runtime '\n"
    "            '(run it in a runtime without venv=)',\n"
    "            name=spec.name, path=origin)\n"
    "\n"
    "    def create_module(self, spec):\n"
    "        origin = spec.origin or ''\n"
    "        checked = os.path.dirname(origin) != dynload\n"
    "        if checked and hotffi._elf_multi_phase(origin) is False:\n"
    "            raise refuse(spec, origin)\n"
    "        module = create(self, spec)\n"
    "        if checked and hotffi._single_phase(module):\n"
    "            if sys.modules.get(spec.name) is module:\n"
    "                del sys.modules[spec.name]\n"
    "            raise refuse(spec, origin)\n"
    "        return module\n"
    "\n"
    "    create_module.__wrapped__ = create\n"
    "    loader.create_module = create_module\n";


/* thread: any.  GIL: any. */
int
hotffi_py_sub_elf_multi_phase(const char *path)
{
    int           fd, rc;
    size_t        size, n, i, len;
    const char   *strtab, *name;
    struct stat   st;
    unsigned char *p;
    ElfW(Ehdr)   *eh;
    ElfW(Shdr)   *sh, *syms, *strs;
    ElfW(Sym)    *sym;
    static const char  want[] = "PyModuleDef_Init";

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }

    if (fstat(fd, &st) != 0 || st.st_size < (off_t) sizeof(ElfW(Ehdr))) {
        (void) close(fd);
        return -1;
    }

    size = (size_t) st.st_size;
    p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    (void) close(fd);

    if (p == MAP_FAILED) {
        return -1;
    }

    rc = -1;
    eh = (ElfW(Ehdr) *) p;

    /* this process's ELF class only: another could not be loaded anyway */
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0
        || eh->e_ident[EI_CLASS] != (sizeof(void *) == 8 ? ELFCLASS64
                                                         : ELFCLASS32)
        || eh->e_shoff == 0 || eh->e_shoff > size
        || eh->e_shentsize != sizeof(ElfW(Shdr))
        || eh->e_shnum > (size - eh->e_shoff) / sizeof(ElfW(Shdr)))
    {
        goto done;
    }

    sh = (ElfW(Shdr) *) (p + eh->e_shoff);

    for (i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type == SHT_DYNSYM) {
            break;
        }
    }

    if (i == eh->e_shnum || sh[i].sh_link >= eh->e_shnum) {
        goto done;
    }

    syms = &sh[i];
    strs = &sh[syms->sh_link];

    if (syms->sh_entsize != sizeof(ElfW(Sym))
        || syms->sh_offset > size || syms->sh_size > size - syms->sh_offset
        || strs->sh_offset > size || strs->sh_size > size - strs->sh_offset)
    {
        goto done;
    }

    strtab = (const char *) p + strs->sh_offset;
    n = syms->sh_size / sizeof(ElfW(Sym));
    rc = 0;

    for (i = 0; i < n; i++) {
        sym = (ElfW(Sym) *) (p + syms->sh_offset) + i;

        if (sym->st_shndx != SHN_UNDEF || sym->st_name >= strs->sh_size) {
            continue;
        }

        name = strtab + sym->st_name;
        len = strnlen(name, strs->sh_size - sym->st_name);

        if (len == sizeof(want) - 1 && memcmp(name, want, len) == 0) {
            rc = 1;
            break;
        }
    }

done:

    (void) munmap(p, size);

    return rc;
}


/* thread: init.  GIL: any. */
int
hotffi_py_sub_check(const char *venv, char *path, char *err, size_t errlen)
{
    struct stat  st;
    char         file[PATH_MAX + 64];

    if (realpath(venv, path) == NULL) {
        (void) snprintf(err, errlen, "venv \"%s\": %s", venv,
                        strerror(errno));
        return HOTFFI_PY_ERROR;
    }

    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        (void) snprintf(err, errlen, "venv \"%s\" is not a directory", venv);
        return HOTFFI_PY_ERROR;
    }

    (void) snprintf(file, sizeof(file), "%s/pyvenv.cfg", path);

    if (access(file, R_OK) != 0) {
        (void) snprintf(err, errlen, "venv \"%s\" has no pyvenv.cfg: it is "
                        "not a virtualenv (make one with \"python3 -m venv "
                        "%s\")", venv, path);
        return HOTFFI_PY_ERROR;
    }

    (void) snprintf(file, sizeof(file), "%s/lib/python%d.%d/site-packages",
                    path, PY_MAJOR_VERSION, PY_MINOR_VERSION);

    if (stat(file, &st) != 0 || !S_ISDIR(st.st_mode)) {
        (void) snprintf(err, errlen, "venv \"%s\" has no lib/python%d.%d/"
                        "site-packages: it was not made by Python %d.%d, "
                        "the one this loader embeds", venv, PY_MAJOR_VERSION,
                        PY_MINOR_VERSION, PY_MAJOR_VERSION, PY_MINOR_VERSION);
        return HOTFFI_PY_ERROR;
    }

    return HOTFFI_PY_OK;
}


/* thread: init.  GIL: held, in the new interpreter.  Runs setup(path). */
static int
hotffi_py_sub_setup(const char *path)
{
    PyObject  *globals, *r, *setup;

    globals = PyDict_New();
    if (globals == NULL) {
        return HOTFFI_PY_ERROR;
    }

    r = NULL;

    if (PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins())
        == 0)
    {
        r = PyRun_String(hotffi_py_sub_src, Py_file_input, globals, globals);
    }

    if (r != NULL) {
        Py_DECREF(r);
        setup = PyDict_GetItemString(globals, "setup");
        r = setup ? PyObject_CallFunction(setup, "O&",
                                          PyUnicode_DecodeFSDefault, path)
                  : NULL;
    }

    Py_DECREF(globals);

    if (r == NULL) {
        return HOTFFI_PY_ERROR;
    }

    Py_DECREF(r);

    return HOTFFI_PY_OK;
}


/* thread: init.  GIL: released. */
hotffi_py_sub_t *
hotffi_py_sub_create(const char *path, char *err, size_t errlen)
{
    PyThreadState     *main, *ts;
    hotffi_py_sub_t   *sub;
    PyGILState_STATE   gstate;

    sub = calloc(1, sizeof(hotffi_py_sub_t));
    if (sub == NULL || (sub->venv = strdup(path)) == NULL) {
        free(sub);
        (void) snprintf(err, errlen, "out of memory");
        return NULL;
    }

    /* Py_NewInterpreter() wants the GIL, and leaves the new state current */
    gstate = PyGILState_Ensure();
    main = PyThreadState_Get();

    ts = Py_NewInterpreter();

    if (ts == NULL) {
        /* CPython put main back; it set no exception */
        PyGILState_Release(gstate);
        (void) snprintf(err, errlen, "venv \"%s\": Py_NewInterpreter() "
                        "failed", path);
        free(sub->venv);
        free(sub);
        return NULL;
    }

    if (hotffi_py_module_install() != HOTFFI_PY_OK
        || hotffi_py_sub_setup(path) != HOTFFI_PY_OK)
    {
        hotffi_py_error_format(err, errlen);
        Py_EndInterpreter(ts);
        (void) PyThreadState_Swap(main);
        PyGILState_Release(gstate);
        free(sub->venv);
        free(sub);
        return NULL;
    }

    sub->interp = PyThreadState_GetInterpreter(ts);
    sub->ts0 = ts;

    /* ts0 stays, unused, until the end; main gives the GIL up */
    (void) PyThreadState_Swap(main);
    PyGILState_Release(gstate);

    return sub;
}


/* thread: any.  GIL: any. */
PyInterpreterState *
hotffi_py_sub_interp(hotffi_py_sub_t *sub)
{
    return sub ? sub->interp : NULL;
}


/*
 * GIL: held, on ts0.  This thread becomes threading's main thread of the
 * interpreter, as ts0 runs on it now.
 */
static void
hotffi_py_sub_main_thread(void)
{
    PyObject  *threading, *main, *ident;

    threading = PyImport_ImportModule("threading");
    main = threading ? PyObject_GetAttrString(threading, "_main_thread")
                     : NULL;
    ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());

    if (main == NULL || ident == NULL
        || PyObject_SetAttrString(main, "_ident", ident) != 0)
    {
        /* threading._shutdown() may then wait for ever: say so */
        PyErr_WriteUnraisable(NULL);
    }

    Py_XDECREF(ident);
    Py_XDECREF(main);
    Py_XDECREF(threading);
}


/* thread: any but the event loop.  GIL: released. */
void
hotffi_py_sub_end(hotffi_py_sub_t *sub)
{
    int                n;
    PyThreadState     *main, *t;
    PyGILState_STATE   gstate;

    if (sub == NULL) {
        return;
    }

    /* the main interpreter's state holds the GIL before and after */
    gstate = PyGILState_Ensure();
    main = PyThreadState_Get();

    n = 0;

    for (t = PyInterpreterState_ThreadHead(sub->interp); t;
         t = PyThreadState_Next(t))
    {
        n += t != sub->ts0;
    }

    if (n != 0) {
        PyGILState_Release(gstate);

        (void) fprintf(stderr, "hotffi_python: venv \"%s\": the "
                       "sub-interpreter is not ended: %d thread%s still "
                       "run%s in it (end the threads a runtime starts when "
                       "its poll returns None)\n", sub->venv, n,
                       n == 1 ? "" : "s", n == 1 ? "s" : "");

        /* the interpreter stays, for good; nothing here points at it */
        free(sub->venv);
        free(sub);
        return;
    }

    (void) PyThreadState_Swap(sub->ts0);

    hotffi_py_sub_main_thread();

    /* atexit functions of the interpreter run here */
    Py_EndInterpreter(sub->ts0);

    (void) PyThreadState_Swap(main);
    PyGILState_Release(gstate);

    free(sub->venv);
    free(sub);
}
