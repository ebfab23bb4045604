/*
 * hotffi_iso_proc.h -- one helper process of an isolated runtime: its
 * shared mapping, its start, its end and why it ended.
 */

#ifndef HOTFFI_ISO_PROC_H
#define HOTFFI_ISO_PROC_H


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hotffi_iso_conf.h"
#include "hotffi_iso_shm.h"


typedef struct {
    hotffi_iso_shm_t  *shm;      /* ours: mapped at start, unmapped by free */
    uint64_t           size;
    hotffi_ring_t      req;      /* we produce */
    hotffi_ring_t      ans;      /* we consume */
    pid_t              pid;
    int                pidfd;    /* readable once the process exited */
} hotffi_iso_proc_t;


/* what a helper starts with besides its conf: the version before's state */
typedef struct {
    const char        *state;    /* borrowed; NULL: none */
    size_t             len;
    int                rollback; /* the version before failed to start */
    int                wake_fd;  /* borrowed: the eventfd the helper
                                    writes to wake the event loop */
} hotffi_iso_start_t;


/*
 * thread: the supervisor (PR_SET_PDEATHSIG follows the thread that starts
 * the helper: it must live as long as the helper may).  Maps a new memfd,
 * writes conf into it and starts conf->helper on it with envp, through a
 * nanny process: a clone child whose exit sends no SIGCHLD, so nginx's
 * own waitpid(-1) in the worker never reaps it, only
 * hotffi_iso_proc_reap() does; the nanny waits for the helper and leaves
 * its wait status in the mapping (the helper, being exec()'ed, would
 * signal its parent).
 * HOTFFI_OK, or HOTFFI_ERROR with why in err.
 * start, envp: borrowed; start's state is copied into the mapping.
 */
int hotffi_iso_proc_start(hotffi_iso_proc_t *p, const hotffi_iso_conf_t *conf,
    const hotffi_iso_start_t *start, char *const *envp, char *err,
    size_t errlen);

/* thread: any.  SIGKILL to the nanny, and so to the helper (reaped
 * later). */
void hotffi_iso_proc_kill(hotffi_iso_proc_t *p);

/*
 * thread: the supervisor, once pidfd is readable.  Reaps the process and
 * says why it ended in why ("signal 11", "exit code 1", or the start's
 * own reason); returns 1 when it exited 0, else 0.
 */
int hotffi_iso_proc_reap(hotffi_iso_proc_t *p, char *why, size_t len);

/* thread: the supervisor.  Unmaps and closes what start made. */
void hotffi_iso_proc_free(hotffi_iso_proc_t *p);

/*
 * thread: event loop.  The environment a helper starts with: the worker's
 * (nginx keeps only what "env" names), plus LD_LIBRARY_PATH as nginx was
 * started with, which is where the worker's dynamic linker looks for
 * libraries.  Returns a malloc()'ed NULL-terminated array of malloc()'ed
 * strings, freed with hotffi_iso_proc_env_free(); NULL without memory.
 */
char **hotffi_iso_proc_env(void);

void hotffi_iso_proc_env_free(char **envp);


#endif /* HOTFFI_ISO_PROC_H */
