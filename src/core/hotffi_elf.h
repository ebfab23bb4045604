/*
 * hotffi_elf.h -- what a library file's ELF headers say about it before
 * it is loaded: whether its language's runtime can exist only once in a
 * process.
 *
 * DESIGN
 * A Go library built with -buildmode=c-shared starts the Go runtime from
 * an ELF constructor as dlopen() maps it, and never stops it (it is linked
 * NODELETE).  Go supports one such runtime per process: a second copy of
 * the library -- a new build of it mapped next to the old one, which is
 * how hotffi reloads new code from a path -- starts a second runtime that
 * then lives for ever beside the first.  So the question is asked of the
 * file, before dlopen(): once mapped, it is too late.
 *
 * A Go library is recognised by what the Go linker writes into every
 * binary it makes, not by its name: a ".go.buildinfo" or
 * ".note.go.buildid" section or, in a file stripped of its section
 * headers, a PT_NOTE segment holding a note of owner "Go" and type 4 (the
 * Go build id).  Only the process's own ELF class is read: a library of
 * another class cannot be loaded anyway.  Every size read from the file is
 * checked against the file's length before it is used.
 */

#ifndef HOTFFI_ELF_H
#define HOTFFI_ELF_H


#include "hotffi_core.h"


/*
 * thread: any.  path (borrowed) names a library file.  Returns the name of
 * the language whose runtime can exist once per process ("Go"), a static
 * string, or NULL: another library, or a file that cannot be read or is
 * not ELF (dlopen() will say why).
 */
const char *hotffi_elf_single(const char *path);


#endif /* HOTFFI_ELF_H */
