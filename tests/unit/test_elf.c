/*
 * test_elf.c -- telling a Go library by its ELF headers, before loading it:
 * the Go linker's sections, or its build-id note when the section headers
 * are gone; anything else, and every truncated or lying file, is not Go
 * and never read out of bounds.  And the audit trail's CRC-32.
 */

#define _GNU_SOURCE

#include <fcntl.h>
#include <link.h>
#include <sys/stat.h>

#include "unit_helpers.h"
#include "hotffi_audit.h"
#include "hotffi_elf.h"


#define ELF_BUF  1024


/* path: a file holding len bytes of data (mkstemp()'s, the caller unlinks) */
static void
elf_write(char *path, const char *data, size_t len)
{
    int  fd;

    strcpy(path, "/tmp/hotffi-elf-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t) len);
    assert_int_equal(close(fd), 0);
}


static const char *
elf_single(const char *data, size_t len)
{
    char         path[64];
    const char  *single;

    elf_write(path, data, len);
    single = hotffi_elf_single(path);
    (void) unlink(path);

    return single;
}


static void
elf_header(ElfW(Ehdr) *eh)
{
    memset(eh, 0, sizeof(*eh));
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_DYN;
    eh->e_version = EV_CURRENT;
    eh->e_ehsize = sizeof(*eh);
}


/* an ELF file whose one section is named name; returns its length */
static size_t
elf_with_section(char *buf, const char *name)
{
    size_t       names;
    ElfW(Ehdr)  *eh = (ElfW(Ehdr) *) buf;
    ElfW(Shdr)  *sh = (ElfW(Shdr) *) (buf + sizeof(*eh));

    memset(buf, 0, ELF_BUF);
    elf_header(eh);
    eh->e_shoff = sizeof(*eh);
    eh->e_shentsize = sizeof(ElfW(Shdr));
    eh->e_shnum = 2;
    eh->e_shstrndx = 1;

    names = sizeof(*eh) + 2 * sizeof(ElfW(Shdr));
    strcpy(buf + names + 1, name);

    sh[0].sh_name = 1;
    sh[1].sh_type = SHT_STRTAB;
    sh[1].sh_offset = names;
    sh[1].sh_size = strlen(name) + 2;

    return names + sh[1].sh_size;
}


/* an ELF file without section headers, with one PT_NOTE segment */
static size_t
elf_with_note(char *buf, const char *owner, uint32_t type)
{
    size_t       notes;
    ElfW(Ehdr)  *eh = (ElfW(Ehdr) *) buf;
    ElfW(Phdr)  *ph = (ElfW(Phdr) *) (buf + sizeof(*eh));
    ElfW(Nhdr)  *nh;

    memset(buf, 0, ELF_BUF);
    elf_header(eh);
    eh->e_phoff = sizeof(*eh);
    eh->e_phentsize = sizeof(ElfW(Phdr));
    eh->e_phnum = 1;

    notes = sizeof(*eh) + sizeof(ElfW(Phdr));
    nh = (ElfW(Nhdr) *) (buf + notes);
    nh->n_namesz = strlen(owner) + 1;
    nh->n_descsz = 4;
    nh->n_type = type;
    memcpy(buf + notes + sizeof(*nh), owner, strlen(owner));
    memcpy(buf + notes + sizeof(*nh) + ((nh->n_namesz + 3) & ~3u), "abcd", 4);

    ph->p_type = PT_NOTE;
    ph->p_offset = notes;
    ph->p_filesz = sizeof(*nh) + ((nh->n_namesz + 3) & ~3u) + 4;

    return notes + ph->p_filesz;
}


/* the Go linker's marks are Go; other names, owners and types are not */
static void
test_elf_marks(void **state)
{
    char     buf[ELF_BUF];
    size_t   n;

    n = elf_with_section(buf, ".go.buildinfo");
    assert_string_equal(elf_single(buf, n), "Go");
    n = elf_with_section(buf, ".note.go.buildid");
    assert_string_equal(elf_single(buf, n), "Go");
    n = elf_with_section(buf, ".go.buildinf");
    assert_null(elf_single(buf, n));
    n = elf_with_section(buf, ".text");
    assert_null(elf_single(buf, n));

    n = elf_with_note(buf, "Go", 4);
    assert_string_equal(elf_single(buf, n), "Go");
    n = elf_with_note(buf, "Go", 3);
    assert_null(elf_single(buf, n));
    n = elf_with_note(buf, "GNU", 4);
    assert_null(elf_single(buf, n));
}


/* a C library, a text file, a directory, nothing: not Go */
static void
test_elf_others(void **state)
{
    char  lib[PATH_MAX];

    assert_null(hotffi_elf_single(unit_lib(lib, sizeof(lib), "rt_idle")));
    assert_null(elf_single("#!/bin/sh\n", 10));
    assert_null(elf_single("", 0));
    assert_null(hotffi_elf_single("/tmp"));
    assert_null(hotffi_elf_single("/nonexistent/libx.so"));
}


/* every prefix of a Go file, and headers that point outside the file */
static void
test_elf_truncated_and_lying(void **state)
{
    char         buf[ELF_BUF];
    size_t       i, n;
    ElfW(Ehdr)  *eh = (ElfW(Ehdr) *) buf;
    ElfW(Shdr)  *sh = (ElfW(Shdr) *) (buf + sizeof(*eh));
    ElfW(Nhdr)  *nh;

    n = elf_with_section(buf, ".go.buildinfo");
    for (i = 0; i < n - 1; i++) {
        /* the name's end is cut: never read past the table */
        assert_null(elf_single(buf, i));
    }

    n = elf_with_note(buf, "Go", 4);
    for (i = 0; i < n; i++) {
        assert_null(elf_single(buf, i));
    }

    n = elf_with_section(buf, ".go.buildinfo");
    sh[1].sh_size = (uint64_t) -1;
    assert_null(elf_single(buf, n));
    sh[1].sh_size = 15;
    sh[0].sh_name = 1000;
    assert_null(elf_single(buf, n));
    sh[0].sh_name = 1;
    eh->e_shstrndx = 7;
    assert_null(elf_single(buf, n));
    eh->e_shstrndx = 1;
    eh->e_shoff = (uint64_t) -8;
    assert_null(elf_single(buf, n));

    n = elf_with_note(buf, "Go", 4);
    nh = (ElfW(Nhdr) *) (buf + sizeof(*eh) + sizeof(ElfW(Phdr)));
    nh->n_namesz = 0xfffffff0;
    assert_null(elf_single(buf, n));
    nh->n_namesz = 3;
    nh->n_descsz = 0xfffffff0;
    assert_null(elf_single(buf, n));
}


/* the CRC-32 check value zlib, cksum -a crc32b and ngx.crc32_long give */
static void
test_audit_crc32(void **state)
{
    assert_int_equal(hotffi_audit_crc32("123456789", 9), 0xcbf43926);
    assert_int_equal(hotffi_audit_crc32("", 0), 0);
    assert_int_equal(hotffi_audit_crc32("fail", 4), 0x86272b49);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_elf_marks),
        cmocka_unit_test(test_elf_others),
        cmocka_unit_test(test_elf_truncated_and_lying),
        cmocka_unit_test(test_audit_crc32),
    };

    unit_init();

    return cmocka_run_group_tests_name("elf", tests, NULL, NULL);
}
