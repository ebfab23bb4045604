/*
 * hotffi_library.c -- dlopen() with lua-resty-ffi's naming rules.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* dladdr(), dlinfo() */
#endif
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "hotffi_library.h"
#include "hotffi_elf.h"


/* how many spellings of one path may be mapped at once */
#define HOTFFI_LIBRARY_SPELLINGS  16


/*
 * thread: event loop.
 * "echo" -> "libecho.so"; paths and file names stay as they are.
 */
static const char *
hotffi_library_file(const char *name, char *buf, size_t size)
{
    if (strchr(name, '/') != NULL || strstr(name, ".so") != NULL) {
        return name;
    }

    (void) snprintf(buf, size, "lib%s.so", name);
    return buf;
}


/*
 * thread: any.
 * The device and inode of the file mapped at addr: HOTFFI_OK, or none.
 */
static int
hotffi_library_file_at(uintptr_t addr, unsigned long *maj, unsigned long *min,
    unsigned long *ino)
{
    int             rc;
    char           *line;
    size_t          size;
    FILE           *maps;
    unsigned long   start, end;

    maps = fopen("/proc/self/maps", "re");
    if (maps == NULL) {
        return HOTFFI_ERROR;
    }

    rc = HOTFFI_DECLINED;
    line = NULL;
    size = 0;

    while (getline(&line, &size, maps) != -1) {
        if (sscanf(line, "%lx-%lx %*s %*s %lx:%lx %lu", &start, &end, maj,
                   min, ino) == 5
            && addr >= start && addr < end)
        {
            rc = HOTFFI_OK;
            break;
        }
    }

    free(line);
    (void) fclose(maps);

    return rc;
}


/*
 * thread: event loop.
 * Whether the loaded library behind handle was mapped from the file path
 * names now.  The mapping holding its dynamic section says which file it
 * came from, whatever name it was opened by.
 */
static int
hotffi_library_is_file(void *handle, const char *path)
{
    struct stat       st;
    unsigned long     maj, min, ino;
    struct link_map  *lm;

    if (dlinfo(handle, RTLD_DI_LINKMAP, &lm) != 0 || stat(path, &st) != 0
        || hotffi_library_file_at((uintptr_t) lm->l_ld, &maj, &min, &ino)
           != HOTFFI_OK)
    {
        return 0;
    }

    return maj == major(st.st_dev) && min == minor(st.st_dev)
           && ino == st.st_ino;
}


/*
 * thread: event loop.
 * The name to dlopen() file by: itself, unless it is a path already mapped
 * from a file since replaced on disk; then "dir/./base", "dir/././base"...,
 * the first that is not mapped or is mapped from the file there now.
 */
static const char *
hotffi_library_spelling(const char *file, char *buf, size_t size)
{
    int          j, k, n;
    void        *mapped;
    const char  *base, *name;

    base = strrchr(file, '/');
    if (base == NULL) {
        return file;
    }

    name = file;

    for (k = 1; k <= HOTFFI_LIBRARY_SPELLINGS; k++) {
        mapped = dlopen(name, RTLD_NOW | RTLD_NOLOAD);
        if (mapped == NULL) {
            return name;
        }

        n = hotffi_library_is_file(mapped, name);
        (void) dlclose(mapped);

        if (n) {
            return name;
        }

        n = snprintf(buf, size, "%.*s/", (int) (base - file), file);

        for (j = 0; j < k && n > 0 && (size_t) n < size; j++) {
            n += snprintf(buf + n, size - n, "./");
        }

        if (n < 0 || (size_t) n >= size
            || (size_t) snprintf(buf + n, size - n, "%s", base + 1)
               >= size - n)
        {
            break;
        }

        name = buf;
    }

    /* every spelling is taken by an old mapping: the plain name reuses one */
    return file;
}


/*
 * thread: event loop.
 * Appends to err, after a dlopen() of a bare file name that found nothing,
 * what to do and where the dynamic linker looked: the directories it
 * searches for this process (LD_LIBRARY_PATH as it was when the process
 * started, the program's run path, the system's), and the ldconfig cache.
 * The advice comes first: a long path list is what gets cut.
 */
static void
hotffi_library_searched(const char *file, char *err, size_t errlen)
{
    void          *self;
    size_t         n;
    unsigned int   i;
    Dl_serinfo     size, *info;

    n = strlen(err);
    n += snprintf(err + n, n < errlen ? errlen - n : 0, "; the dynamic linker "
                  "reads LD_LIBRARY_PATH once, when nginx starts (an \"env\" "
                  "directive does not change it): load the library by its "
                  "absolute path, e.g. \"/path/to/%s\"", file);

    info = NULL;
    self = dlopen(NULL, RTLD_NOW);

    if (self && dlinfo(self, RTLD_DI_SERINFOSIZE, &size) == 0) {
        info = malloc(size.dls_size);
    }

    if (info) {
        *info = size;

        if (dlinfo(self, RTLD_DI_SERINFOSIZE, info) != 0
            || dlinfo(self, RTLD_DI_SERINFO, info) != 0)
        {
            info->dls_cnt = 0;
        }

        for (i = 0; i < info->dls_cnt && n < errlen; i++) {
            n += snprintf(err + n, errlen - n, "%s%s",
                          i ? ", " : " (searched: ",
                          info->dls_serpath[i].dls_name);
        }

        if (i && n < errlen) {
            (void) snprintf(err + n, errlen - n, " and the ldconfig cache)");
        }

        free(info);
    }

    if (self) {
        (void) dlclose(self);
    }
}


/*
 * thread: event loop.
 * Fills lib's file identity, and lib->single, from the file its dynamic
 * section was mapped from; a path whose file was replaced since leaves the
 * modification time and the language unknown.
 */
static void
hotffi_library_identify(hotffi_library_t *lib)
{
    struct stat       st;
    struct link_map  *lm;

    if (dlinfo(lib->handle, RTLD_DI_LINKMAP, &lm) != 0
        || hotffi_library_file_at((uintptr_t) lm->l_ld, &lib->dev_major,
                                  &lib->dev_minor, &lib->ino) != HOTFFI_OK)
    {
        lib->dev_major = 0;
        lib->dev_minor = 0;
        lib->ino = 0;
        return;
    }

    if (stat(lm->l_name, &st) == 0 && st.st_ino == lib->ino
        && major(st.st_dev) == lib->dev_major
        && minor(st.st_dev) == lib->dev_minor)
    {
        lib->mtime = (int64_t) st.st_mtime;
        lib->single = hotffi_elf_single(lm->l_name);
    }
}


/* thread: event loop */
int
hotffi_library_open(hotffi_library_t *lib, const char *name, int global,
    char *err, size_t errlen)
{
    char        buf[512], spelled[4096];
    const char  *file, *reason, *single, *plain;

    memset(lib, 0, sizeof(hotffi_library_t));

    plain = hotffi_library_file(name, buf, sizeof(buf));
    file = hotffi_library_spelling(plain, spelled, sizeof(spelled));

    /* a second mapping of a replaced file: its constructors would run */
    if (file != plain && (single = hotffi_elf_single(plain)) != NULL) {
        (void) snprintf(err, errlen, "\"%s\" is a %s library whose older "
                        "file is still loaded in this process, and %s runs "
                        "one runtime per process, never unloaded: its new "
                        "code starts with nginx -s reload", plain, single,
                        single);
        return HOTFFI_ERROR;
    }

    lib->handle = dlopen(file, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL));
    if (lib->handle == NULL) {
        reason = dlerror();
        (void) snprintf(err, errlen, "dlopen() \"%s\" failed: %s", file,
                        reason ? reason : "unknown error");

        /* a bare name not found: say where it was looked for */
        if (strchr(file, '/') == NULL && reason
            && strstr(reason, "No such file") != NULL)
        {
            hotffi_library_searched(file, err, errlen);
        }

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
    *(void **) &lib->retire = dlsym(lib->handle, "libffi_retire");

    hotffi_library_identify(lib);

    return HOTFFI_OK;
}


/* thread: event loop */
int
hotffi_library_replaceable(const hotffi_library_t *lib, const char *name,
    char *err, size_t errlen)
{
    int          same, ours;
    char         buf[512];
    void        *mapped;
    const char  *file;

    if (lib->single == NULL) {
        return HOTFFI_OK;
    }

    file = hotffi_library_file(name, buf, sizeof(buf));

    /* lib's mapping, and, for a path, still its file */
    mapped = dlopen(file, RTLD_NOW | RTLD_NOLOAD);
    ours = mapped != NULL && mapped == lib->handle;
    same = ours && (strchr(file, '/') == NULL
                    || hotffi_library_is_file(mapped, file));

    if (mapped) {
        (void) dlclose(mapped);
    }

    if (same) {
        return HOTFFI_OK;
    }

    (void) snprintf(err, errlen, "cannot replace a %s library in place: %s "
                    "runs one runtime per process and never unloads it, and "
                    "\"%s\" is %s; reload with the same library (a new "
                    "cfg) in place, and start new %s code with nginx -s "
                    "reload", lib->single, lib->single, file,
                    ours ? "a new file since it was loaded"
                         : "another library",
                    lib->single);
    return HOTFFI_DECLINED;
}


/* thread: event loop */
int
hotffi_library_dup(hotffi_library_t *dst, const hotffi_library_t *src,
    char *err, size_t errlen)
{
    const char       *reason;
    struct link_map  *lm;

    *dst = *src;

    /* the name the mapping was opened by matches it before any file does */
    if (dlinfo(src->handle, RTLD_DI_LINKMAP, &lm) == 0) {
        dst->handle = dlopen(lm->l_name, RTLD_NOW | RTLD_NOLOAD);
        if (dst->handle) {
            return HOTFFI_OK;
        }
    }

    reason = dlerror();
    (void) snprintf(err, errlen, "cannot open the loaded library again: %s",
                    reason ? reason : "dlinfo() failed");
    dst->handle = NULL;
    return HOTFFI_ERROR;
}


/* thread: any */
int
hotffi_library_close(hotffi_library_t *lib)
{
    int             known;
    uintptr_t       code;
    unsigned long   maj, min, ino, maj2, min2, ino2;

    if (lib->handle == NULL) {
        return HOTFFI_OK;
    }

    /* whether the very code of libffi_init() is still there afterwards */
    code = (uintptr_t) *(void **) &lib->init;
    known = hotffi_library_file_at(code, &maj, &min, &ino) == HOTFFI_OK;

    (void) dlclose(lib->handle);
    lib->handle = NULL;

    if (known
        && hotffi_library_file_at(code, &maj2, &min2, &ino2) == HOTFFI_OK
        && maj2 == maj && min2 == min && ino2 == ino)
    {
        return HOTFFI_DECLINED;
    }

    return HOTFFI_OK;
}
