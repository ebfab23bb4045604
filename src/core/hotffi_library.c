/*
 * hotffi_library.c -- dlopen() with lua-resty-ffi's naming rules.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* dladdr() */
#endif
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "hotffi_library.h"


/* "echo" -> "libecho.so"; paths and file names stay as they are. */
static const char *
hotffi_library_file(const char *name, char *buf, size_t size)
{
    if (strchr(name, '/') != NULL || strstr(name, ".so") != NULL) {
        return name;
    }

    (void) snprintf(buf, size, "lib%s.so", name);
    return buf;
}


int
hotffi_library_open(hotffi_library_t *lib, const char *name, int global,
    char *err, size_t errlen)
{
    char        buf[512];
    const char  *file, *reason;

    memset(lib, 0, sizeof(hotffi_library_t));

    file = hotffi_library_file(name, buf, sizeof(buf));

    lib->handle = dlopen(file, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL));
    if (lib->handle == NULL) {
        reason = dlerror();
        (void) snprintf(err, errlen, "dlopen() \"%s\" failed: %s", file,
                        reason ? reason : "unknown error");
        return HOTFFI_ERROR;
    }

    (void) dlerror();
    *(void **) &lib->init = dlsym(lib->handle, "libffi_init");

    if (lib->init == NULL) {
        reason = dlerror();
        (void) snprintf(err, errlen, "dlsym() \"libffi_init\" in \"%s\" "
                        "failed: %s", file, reason ? reason : "NULL symbol");
        (void) dlclose(lib->handle);
        lib->handle = NULL;
        return HOTFFI_ERROR;
    }

    *(void **) &lib->fini = dlsym(lib->handle, "libffi_fini");

    return HOTFFI_OK;
}


int
hotffi_library_close(hotffi_library_t *lib)
{
    char     path[4096];
    void    *again;
    Dl_info  info;

    if (lib->handle == NULL) {
        return HOTFFI_OK;
    }

    /* the file actually mapped, to ask the linker about it afterwards */
    path[0] = '\0';
    if (dladdr(*(void **) &lib->init, &info) && info.dli_fname) {
        (void) snprintf(path, sizeof(path), "%s", info.dli_fname);
    }

    (void) dlclose(lib->handle);
    lib->handle = NULL;

    if (path[0] == '\0') {
        return HOTFFI_OK;
    }

    again = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (again == NULL) {
        return HOTFFI_OK;
    }

    (void) dlclose(again);
    return HOTFFI_DECLINED;
}
