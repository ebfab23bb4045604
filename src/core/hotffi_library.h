/*
 * hotffi_library.h -- finding, opening and closing a runtime's shared
 * library, and the entry points it exports.
 */

#ifndef HOTFFI_LIBRARY_H
#define HOTFFI_LIBRARY_H


#include "hotffi_core.h"


typedef int (*hotffi_init_pt)(char *cfg, void *tq);
typedef int (*hotffi_fini_pt)(void *tq);


struct hotffi_library_s {
    void            *handle;     /* from dlopen() */
    hotffi_init_pt   init;       /* libffi_init, required */
    hotffi_fini_pt   fini;       /* libffi_fini, optional */
};


/*
 * thread: event loop.  name is a path (it has a '/'), a file name searched
 * by the dynamic linker (LD_LIBRARY_PATH, then the system's paths), or a
 * short name: "echo" means "libecho.so".  global adds RTLD_GLOBAL.  On
 * failure returns HOTFFI_ERROR with the reason, dlerror()'s text included,
 * in err.
 */
int hotffi_library_open(hotffi_library_t *lib, const char *name, int global,
    char *err, size_t errlen);

/*
 * thread: any.  Only once no code of the library can run any more.
 * HOTFFI_OK when the library is gone from the process, HOTFFI_DECLINED when
 * it stays mapped (another handle, NODELETE, pending thread-local
 * destructors), which the next load would silently reuse.
 */
int hotffi_library_close(hotffi_library_t *lib);


#endif /* HOTFFI_LIBRARY_H */
