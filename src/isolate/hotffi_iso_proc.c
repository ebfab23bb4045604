/*
 * hotffi_iso_proc.c -- one helper process (see hotffi_iso_proc.h).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hotffi_iso_proc.h"


/*
 * thread: the nanny, a clone of the supervisor's thread that never execs
 * (an exec would make its end send SIGCHLD to the worker, whose nginx
 * handler would reap it and log an alert).  One thread, every signal
 * blocked, a copy of the worker's memory: system calls only.  It closes
 * the worker's descriptors (listening sockets, connections), starts the
 * helper, waits for it and leaves its wait status in the mapping.  Both
 * die with their parent (PR_SET_PDEATHSIG): killing the nanny kills the
 * helper.
 */
static void
hotffi_iso_proc_nanny(int fd, int wake_fd, pid_t worker, char **argv,
    char *const *envp, hotffi_iso_shm_t *shm)
{
    int                 status;
    long                pid;
    char               *d, digits[24];
    pid_t               self;
    struct clone_args   ca;

    (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != worker) {
        _exit(1);
    }

    /* ps shows the worker's command line still, its name is ours */
    (void) prctl(PR_SET_NAME, "hotffi-nanny");

    /* above both numbers first: either may be the other's now */
    fd = fcntl(fd, F_DUPFD, HOTFFI_ISO_WAKE_FD + 1);
    wake_fd = wake_fd == -1 ? -1
              : fcntl(wake_fd, F_DUPFD, HOTFFI_ISO_WAKE_FD + 1);

    if (fd == -1 || dup2(fd, HOTFFI_ISO_FD) == -1
        || (wake_fd != -1 && dup2(wake_fd, HOTFFI_ISO_WAKE_FD) == -1))
    {
        _exit(2);
    }

    (void) syscall(SYS_close_range,
                   (wake_fd == -1 ? HOTFFI_ISO_FD : HOTFFI_ISO_WAKE_FD) + 1,
                   ~0u, 0);

    /* argv[2]: our pid in decimal, for the helper's parent check */
    self = getpid();
    d = digits + sizeof(digits) - 1;
    *d = '\0';
    do {
        *--d = (char) ('0' + self % 10);
        self /= 10;
    } while (self > 0);
    memcpy(argv[2], d, (size_t) (digits + sizeof(digits) - d));

    memset(&ca, 0, sizeof(ca));
    ca.exit_signal = SIGCHLD;

    pid = syscall(SYS_clone3, &ca, sizeof(ca));

    if (pid == 0) {
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        (void) execve(argv[0], argv, envp);
        _exit(127);
    }

    if (pid == -1) {
        _exit(3);
    }

    (void) close(HOTFFI_ISO_FD);
    (void) close(HOTFFI_ISO_WAKE_FD);

    while (waitpid((pid_t) pid, &status, 0) == -1) {
        if (errno != EINTR) {
            _exit(4);
        }
    }

    shm->helper_status = status;
    atomic_store(&shm->helper_ended, 1);
    _exit(0);
}


/* thread: the supervisor */
int
hotffi_iso_proc_start(hotffi_iso_proc_t *p, const hotffi_iso_conf_t *conf,
    const hotffi_iso_start_t *start, char *const *envp, char *err,
    size_t errlen)
{
    int                 fd, pidfd;
    long                pid;
    char                fdarg[16], ppid[24];
    pid_t               worker;
    char               *argv[4];
    uint64_t            size;
    hotffi_iso_shm_t   *shm;
    struct clone_args   ca;

    memset(p, 0, sizeof(hotffi_iso_proc_t));
    p->pidfd = -1;

    size = hotffi_iso_shm_size(conf->cfg_len, start->len, conf->inflight,
                               conf->ring);

    fd = memfd_create("hotffi-isolated", MFD_CLOEXEC);
    if (fd == -1) {
        (void) snprintf(err, errlen, "memfd_create() failed: %s",
                        strerror(errno));
        return HOTFFI_ERROR;
    }

    if (ftruncate(fd, (off_t) size) != 0) {
        (void) snprintf(err, errlen, "ftruncate() failed: %s",
                        strerror(errno));
        (void) close(fd);
        return HOTFFI_ERROR;
    }

    /*
     * MAP_POPULATE: the rings' pages are allocated and mapped now, off the
     * event loop, rather than faulted in by the calls that first reach
     * them (a 1 MiB echo took 20-50 ms until a 32 MiB ring had wrapped
     * once, under load; the pages are all used once it has)
     */
    shm = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
               fd, 0);
    if (shm == MAP_FAILED) {
        (void) snprintf(err, errlen, "mmap() failed: %s", strerror(errno));
        (void) close(fd);
        return HOTFFI_ERROR;
    }

    /* a new memfd is zeroes: only what is not 0 is written */
    shm->magic = HOTFFI_ISO_MAGIC;
    shm->version = HOTFFI_ISO_VERSION;
    shm->total = size;
    shm->ring_size = conf->ring;
    shm->cfg_len = conf->cfg_len;
    shm->slots = conf->inflight;
    shm->state_len = start->len;
    shm->has_state = start->state != NULL;
    shm->rollback = start->rollback != 0;
    shm->has_cfg = conf->cfg != NULL;
    shm->has_wake = start->wake_fd != -1;
    shm->memory = conf->memory;
    shm->cpu = conf->cpu;
    shm->files = conf->files;
    (void) snprintf(shm->lib, sizeof(shm->lib), "%s", conf->lib);

    if (conf->cfg != NULL) {
        memcpy(hotffi_iso_shm_cfg(shm), conf->cfg, conf->cfg_len);
    }

    if (start->len) {
        memcpy(hotffi_iso_shm_state(shm), start->state, start->len);
    }

    p->shm = shm;
    p->size = size;
    hotffi_iso_shm_rings(shm, &p->req, &p->ans, 1);

    /* all made before the clone: the child only makes system calls */
    (void) snprintf(fdarg, sizeof(fdarg), "%d", HOTFFI_ISO_FD);
    argv[0] = conf->helper;
    argv[1] = fdarg;
    argv[2] = ppid;     /* the nanny's pid, written by the nanny */
    argv[3] = NULL;

    memset(&ca, 0, sizeof(ca));
    ca.flags = CLONE_PIDFD;
    ca.pidfd = (uint64_t) (uintptr_t) &pidfd;
    ca.exit_signal = 0;     /* no SIGCHLD: see hotffi_iso_proc.h */

    worker = getpid();
    pid = syscall(SYS_clone3, &ca, sizeof(ca));

    if (pid == 0) {
        hotffi_iso_proc_nanny(fd, start->wake_fd, worker, argv, envp, shm);
    }

    (void) close(fd);

    if (pid == -1) {
        (void) snprintf(err, errlen, "clone3() failed: %s", strerror(errno));
        (void) munmap(shm, size);
        p->shm = NULL;
        return HOTFFI_ERROR;
    }

    p->pid = (pid_t) pid;
    p->pidfd = pidfd;
    return HOTFFI_OK;
}


/* thread: any */
void
hotffi_iso_proc_kill(hotffi_iso_proc_t *p)
{
    (void) syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
}


/* thread: the supervisor */
int
hotffi_iso_proc_reap(hotffi_iso_proc_t *p, char *why, size_t len)
{
    int   status;

    while (waitpid(p->pid, &status, __WALL) == -1) {
        if (errno != EINTR) {
            (void) snprintf(why, len, "waitpid() failed: %s",
                            strerror(errno));
            return 0;
        }
    }

    if (WIFSIGNALED(status)) {
        /* the nanny was killed (by us), and the helper with it */
        (void) snprintf(why, len, "killed");
        return 0;
    }

    if (WEXITSTATUS(status) != 0 || !atomic_load(&p->shm->helper_ended)) {
        (void) snprintf(why, len, "the helper did not start (%d)",
                        WEXITSTATUS(status));
        return 0;
    }

    status = p->shm->helper_status;

    if (WIFSIGNALED(status)) {
        (void) snprintf(why, len, "signal %d", WTERMSIG(status));
        return 0;
    }

    status = WEXITSTATUS(status);

    if (status == HOTFFI_ISO_EXIT_INIT
        && atomic_load(&p->shm->state) == HOTFFI_ISO_INIT_FAILED)
    {
        /* written by the helper: bounded, and NUL-terminated here */
        p->shm->init_err[sizeof(p->shm->init_err) - 1] = '\0';
        (void) snprintf(why, len, "%s", p->shm->init_err);
        return 0;
    }

    if (status == 127) {
        (void) snprintf(why, len, "exit code 127 (could it execute the "
                        "helper program?)");
        return 0;
    }

    (void) snprintf(why, len, "exit code %d", status);
    return status == 0;
}


/* thread: the supervisor */
void
hotffi_iso_proc_free(hotffi_iso_proc_t *p)
{
    if (p->shm != NULL) {
        (void) munmap(p->shm, p->size);
        p->shm = NULL;
    }

    if (p->pidfd != -1) {
        (void) close(p->pidfd);
        p->pidfd = -1;
    }
}


/* thread: event loop.  Reads the environment nginx was started with. */
static char *
hotffi_iso_proc_start_env(const char *name)
{
    int      fd;
    char    *buf, *p, *end, *v;
    size_t   n, size, nlen;
    ssize_t  got;

    fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return NULL;
    }

    size = 65536;
    n = 0;
    buf = malloc(size);

    while (buf != NULL) {
        got = read(fd, buf + n, size - n);
        if (got <= 0) {
            break;
        }

        n += (size_t) got;

        if (n == size) {
            p = realloc(buf, size * 2);
            if (p == NULL) {
                break;
            }
            buf = p;
            size *= 2;
        }
    }

    (void) close(fd);

    if (buf == NULL) {
        return NULL;
    }

    v = NULL;
    nlen = strlen(name);
    end = buf + n;

    for (p = buf; p < end; p += strnlen(p, (size_t) (end - p)) + 1) {
        if ((size_t) (end - p) > nlen && memcmp(p, name, nlen) == 0
            && p[nlen] == '=')
        {
            v = strndup(p, (size_t) (end - p));
            break;
        }
    }

    free(buf);
    return v;
}


/* thread: event loop */
char **
hotffi_iso_proc_env(void)
{
    int      have;
    char   **envp, *ld;
    size_t   n, i;

    for (n = 0; environ[n] != NULL; n++) { /* void */ }

    envp = calloc(n + 2, sizeof(char *));
    if (envp == NULL) {
        return NULL;
    }

    have = 0;

    for (i = 0; i < n; i++) {
        envp[i] = strdup(environ[i]);
        if (envp[i] == NULL) {
            hotffi_iso_proc_env_free(envp);
            return NULL;
        }

        have |= strncmp(environ[i], "LD_LIBRARY_PATH=", 16) == 0;
    }

    if (!have) {
        ld = hotffi_iso_proc_start_env("LD_LIBRARY_PATH");
        if (ld != NULL) {
            envp[n] = ld;
        }
    }

    return envp;
}


void
hotffi_iso_proc_env_free(char **envp)
{
    size_t  i;

    for (i = 0; envp[i] != NULL; i++) {
        free(envp[i]);
    }

    free(envp);
}
