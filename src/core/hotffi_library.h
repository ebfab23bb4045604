/*
 * hotffi_library.h -- finding, opening and closing a runtime's shared
 * library, and the entry points it exports.
 */

#ifndef HOTFFI_LIBRARY_H
#define HOTFFI_LIBRARY_H


#include "hotffi_core.h"


typedef int (*hotffi_init_pt)(char *cfg, void *tq);
typedef int (*hotffi_fini_pt)(void *tq);
typedef int (*hotffi_retire_pt)(void *tq, char **state, int *len);


struct hotffi_library_s {
    void              *handle;   /* from dlopen() */
    hotffi_init_pt     init;     /* libffi_init, required */
    hotffi_fini_pt     fini;     /* libffi_fini, optional */
    hotffi_retire_pt   retire;   /* libffi_retire, optional */

    /* the file mapped, for operators (ino 0: unknown) */
    unsigned long      dev_major;
    unsigned long      dev_minor;
    unsigned long      ino;
    int64_t            mtime;    /* seconds since the epoch; 0: unknown */

    /* the language whose runtime exists once per process (hotffi_elf.h),
       a static string, or NULL */
    const char        *single;
};


/*
 * thread: event loop.  name is a path (it has a '/'), a file name searched
 * by the dynamic linker (LD_LIBRARY_PATH, then the system's paths), or a
 * short name: "echo" means "libecho.so".  global adds RTLD_GLOBAL.  On
 * failure returns HOTFFI_ERROR with the reason, dlerror()'s text included,
 * in err.
 *
 * A path whose file was replaced on disk while the old file is still
 * mapped gets the new file, in a mapping of its own: the dynamic linker
 * would hand back the old mapping for the same path, so the path is spelled
 * differently ("dir/./lib.so").  That is how a reload runs new code while
 * the old code stays mapped for a rollback.  The same file opened twice
 * shares one mapping.  A library whose runtime can exist only once in a
 * process (Go, see hotffi_elf.h) is refused such a second mapping, before
 * it is mapped.
 *
 * lib's file identity fields say which file was mapped, whatever happens
 * to the path later.
 */
int hotffi_library_open(hotffi_library_t *lib, const char *name, int global,
    char *err, size_t errlen);

/*
 * thread: event loop.  Whether name may replace lib's code in place: yes,
 * unless lib's runtime exists once per process (lib->single) and name
 * would not open lib's very mapping -- another file, or lib's path holding
 * a new file since -- for that library can never leave the process and a
 * second one must not join it.  HOTFFI_OK, or HOTFFI_DECLINED with what
 * works instead in err.  Maps nothing.
 */
int hotffi_library_replaceable(const hotffi_library_t *lib, const char *name,
    char *err, size_t errlen);

/*
 * thread: event loop.  Another handle on the very mapping src has, even if
 * its file was replaced on disk since.
 */
int hotffi_library_dup(hotffi_library_t *dst, const hotffi_library_t *src,
    char *err, size_t errlen);

/*
 * thread: any.  Only once no code of the library can run any more.
 * HOTFFI_OK when the library is gone from the process, HOTFFI_DECLINED when
 * it stays mapped (another handle, NODELETE, pending thread-local
 * destructors), which the next load would silently reuse.
 */
int hotffi_library_close(hotffi_library_t *lib);


#endif /* HOTFFI_LIBRARY_H */
