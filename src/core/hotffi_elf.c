/*
 * hotffi_elf.c -- reading a library's section names and notes for the Go
 * linker's marks (see hotffi_elf.h).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* ElfW() */
#endif
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hotffi_elf.h"


/* what is read at most: far above any real library's headers or notes
   (there are at most 65535 headers of each kind, 16-bit counts) */
#define HOTFFI_ELF_MAX_READ     (4 << 20)

#define HOTFFI_ELF_GO_NOTE      4           /* the Go build id's note type */


/*
 * thread: any.
 * len bytes at off of fd, malloc()'ed (caller frees with free()), or NULL
 * when they lie outside the file's size bytes or cannot be read.
 */
static void *
hotffi_elf_read(int fd, off_t size, uint64_t off, uint64_t len)
{
    char  *buf;

    if (len == 0 || len > HOTFFI_ELF_MAX_READ || off > (uint64_t) size
        || len > (uint64_t) size - off)
    {
        return NULL;
    }

    buf = malloc(len);
    if (buf && pread(fd, buf, len, (off_t) off) != (ssize_t) len) {
        free(buf);
        return NULL;
    }

    return buf;
}


/* thread: any.  Whether a section is named as the Go linker names its. */
static int
hotffi_elf_go_sections(int fd, off_t size, const ElfW(Ehdr) *eh)
{
    int               go;
    char             *names;
    size_t            i;
    ElfW(Shdr)       *sh, *strtab;

    if (eh->e_shnum == 0 || eh->e_shentsize != sizeof(ElfW(Shdr))
        || eh->e_shstrndx >= eh->e_shnum)
    {
        return 0;
    }

    sh = hotffi_elf_read(fd, size, eh->e_shoff,
                         (uint64_t) eh->e_shnum * sizeof(ElfW(Shdr)));
    if (sh == NULL) {
        return 0;
    }

    strtab = &sh[eh->e_shstrndx];
    names = hotffi_elf_read(fd, size, strtab->sh_offset, strtab->sh_size);
    go = 0;

    for (i = 0; names && i < eh->e_shnum && !go; i++) {
        /* a name must end inside the table */
        if (sh[i].sh_name < strtab->sh_size
            && memchr(names + sh[i].sh_name, '\0',
                      strtab->sh_size - sh[i].sh_name) != NULL)
        {
            go = strcmp(names + sh[i].sh_name, ".go.buildinfo") == 0
                 || strcmp(names + sh[i].sh_name, ".note.go.buildid") == 0;
        }
    }

    free(names);
    free(sh);

    return go;
}


/* thread: any.  Whether len bytes of notes hold Go's build id. */
static int
hotffi_elf_go_note(const char *notes, uint64_t len)
{
    uint64_t          off, namesz, descsz;
    const ElfW(Nhdr) *nh;

    off = 0;

    while (len - off >= sizeof(ElfW(Nhdr))) {
        nh = (const ElfW(Nhdr) *) (notes + off);
        namesz = (nh->n_namesz + 3) & ~(uint64_t) 3;
        descsz = (nh->n_descsz + 3) & ~(uint64_t) 3;
        off += sizeof(ElfW(Nhdr));

        if (namesz > len - off || descsz > len - off - namesz) {
            return 0;
        }

        /* the owner is "Go", NUL-padded to 4 bytes */
        if (nh->n_type == HOTFFI_ELF_GO_NOTE
            && (nh->n_namesz == 3 || nh->n_namesz == 4)
            && memcmp(notes + off, "Go", 3) == 0)
        {
            return 1;
        }

        off += namesz + descsz;
    }

    return 0;
}


/* thread: any.  Whether a PT_NOTE segment holds Go's build id. */
static int
hotffi_elf_go_segments(int fd, off_t size, const ElfW(Ehdr) *eh)
{
    int          go;
    char        *notes;
    size_t       i;
    ElfW(Phdr)  *ph;

    if (eh->e_phnum == 0 || eh->e_phentsize != sizeof(ElfW(Phdr))) {
        return 0;
    }

    ph = hotffi_elf_read(fd, size, eh->e_phoff,
                         (uint64_t) eh->e_phnum * sizeof(ElfW(Phdr)));
    if (ph == NULL) {
        return 0;
    }

    go = 0;

    for (i = 0; i < eh->e_phnum && !go; i++) {
        if (ph[i].p_type != PT_NOTE) {
            continue;
        }

        notes = hotffi_elf_read(fd, size, ph[i].p_offset, ph[i].p_filesz);
        if (notes) {
            /* the buffer is malloc()'ed: aligned for the note headers */
            go = hotffi_elf_go_note(notes, ph[i].p_filesz);
            free(notes);
        }
    }

    free(ph);

    return go;
}


/* thread: any */
const char *
hotffi_elf_single(const char *path)
{
    int           fd, go;
    struct stat   st;
    ElfW(Ehdr)    eh;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return NULL;
    }

    go = 0;

    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
        && pread(fd, &eh, sizeof(eh), 0) == (ssize_t) sizeof(eh)
        && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0
        && eh.e_ident[EI_CLASS] == (sizeof(void *) == 8 ? ELFCLASS64
                                                         : ELFCLASS32))
    {
        go = hotffi_elf_go_sections(fd, st.st_size, &eh)
             || hotffi_elf_go_segments(fd, st.st_size, &eh);
    }

    (void) close(fd);

    return go ? "Go" : NULL;
}
