/*
 * echo_server.c -- the benchmark's baseline: an echo server on a unix domain
 * socket, speaking length-prefixed frames (4 bytes big-endian length, then
 * that many bytes), as the comparison lua-resty-ffi publishes.  One thread,
 * epoll, any number of connections; each complete frame is copied to the
 * connection's output once and sent back, as examples/c/echo.c copies each
 * request once.
 *
 * usage: echo_server PATH    (runs until killed; PATH is replaced)
 */

#define _GNU_SOURCE   /* accept4() */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>


#define ECHO_MAX_FRAME   (64u * 1024 * 1024)
#define ECHO_READ_CHUNK  (256 * 1024)
#define ECHO_MAX_EVENTS  64


typedef struct {
    char    *data;
    size_t   start;      /* first byte not yet consumed (in) or sent (out) */
    size_t   len;        /* end of the valid bytes */
    size_t   cap;
} echo_buf_t;


typedef struct {
    int          fd;
    int          want_out;   /* EPOLLOUT registered */
    echo_buf_t   in;
    echo_buf_t   out;
} echo_conn_t;


/* Room for n more bytes after len; compacts first, then grows. */
static int
echo_buf_reserve(echo_buf_t *b, size_t n)
{
    size_t   cap;
    char    *p;

    if (b->start == b->len) {
        b->start = 0;
        b->len = 0;

    } else if (b->start > 0 && b->cap - b->len < n) {
        memmove(b->data, b->data + b->start, b->len - b->start);
        b->len -= b->start;
        b->start = 0;
    }

    if (b->cap - b->len >= n) {
        return 0;
    }

    cap = b->cap ? b->cap : 4096;

    while (cap - b->len < n) {
        cap *= 2;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }

    b->data = p;
    b->cap = cap;

    return 0;
}


static void
echo_close(int ep, echo_conn_t *c)
{
    (void) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    (void) close(c->fd);
    free(c->in.data);
    free(c->out.data);
    free(c);
}


/* Sends what is pending; 0 when done or blocked, -1 on error. */
static int
echo_flush(int ep, echo_conn_t *c)
{
    ssize_t             n;
    struct epoll_event  ev;

    while (c->out.start < c->out.len) {
        n = send(c->fd, c->out.data + c->out.start,
                 c->out.len - c->out.start, MSG_NOSIGNAL);

        if (n > 0) {
            c->out.start += n;
            continue;
        }

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }

        return -1;
    }

    if ((c->out.start < c->out.len) != c->want_out) {
        c->want_out = !c->want_out;
        ev.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0);
        ev.data.ptr = c;

        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == -1) {
            return -1;
        }
    }

    return 0;
}


/* Moves every complete frame from in to out; -1 on a bad frame. */
static int
echo_frames(echo_conn_t *c)
{
    size_t          avail, frame;
    unsigned char  *h;

    for ( ;; ) {
        avail = c->in.len - c->in.start;

        if (avail < 4) {
            return 0;
        }

        h = (unsigned char *) c->in.data + c->in.start;
        frame = ((size_t) h[0] << 24) | ((size_t) h[1] << 16)
                | ((size_t) h[2] << 8) | h[3];

        if (frame > ECHO_MAX_FRAME) {
            return -1;
        }

        if (avail < 4 + frame) {
            /* make room for the whole frame at once */
            return echo_buf_reserve(&c->in, 4 + frame - avail);
        }

        if (echo_buf_reserve(&c->out, 4 + frame) != 0) {
            return -1;
        }

        memcpy(c->out.data + c->out.len, c->in.data + c->in.start,
               4 + frame);
        c->out.len += 4 + frame;
        c->in.start += 4 + frame;
    }
}


/* Reads what is there; 0 to go on, -1 to close. */
static int
echo_read(int ep, echo_conn_t *c)
{
    size_t   room;
    ssize_t  n;

    for ( ;; ) {
        if (echo_buf_reserve(&c->in, ECHO_READ_CHUNK) != 0) {
            return -1;
        }

        room = c->in.cap - c->in.len;
        n = recv(c->fd, c->in.data + c->in.len, room, 0);

        if (n > 0) {
            c->in.len += n;

            if (echo_frames(c) != 0) {
                return -1;
            }

            if ((size_t) n < room) {
                break;
            }

            continue;
        }

        if (n == 0) {
            return -1;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        }

        return -1;
    }

    return echo_flush(ep, c);
}


static void
echo_accept(int ep, int ls)
{
    int                  fd;
    echo_conn_t         *c;
    struct epoll_event   ev;

    for ( ;; ) {
        fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                perror("echo_server: accept4() failed");
            }
            return;
        }

        c = calloc(1, sizeof(echo_conn_t));
        if (c == NULL) {
            (void) close(fd);
            continue;
        }

        c->fd = fd;
        ev.events = EPOLLIN;
        ev.data.ptr = c;

        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
            perror("echo_server: epoll_ctl() failed");
            (void) close(fd);
            free(c);
        }
    }
}


int
main(int argc, char **argv)
{
    int                  ep, ls, i, n;
    echo_conn_t         *c;
    struct sockaddr_un   sa;
    struct epoll_event   ev, events[ECHO_MAX_EVENTS];

    if (argc != 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "usage: echo_server PATH (shorter than %zu)\n",
                sizeof(sa.sun_path));
        return 2;
    }

    (void) signal(SIGPIPE, SIG_IGN);

    ls = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls == -1) {
        perror("echo_server: socket() failed");
        return 1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, argv[1], strlen(argv[1]));
    (void) unlink(argv[1]);

    /* anyone may connect: nginx started as root runs its workers as
     * nobody */
    if (bind(ls, (struct sockaddr *) &sa, sizeof(sa)) == -1
        || chmod(argv[1], 0666) == -1
        || listen(ls, 1024) == -1)
    {
        perror("echo_server: bind(), chmod() or listen() failed");
        return 1;
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep == -1) {
        perror("echo_server: epoll_create1() failed");
        return 1;
    }

    ev.events = EPOLLIN;
    ev.data.ptr = NULL;

    if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) == -1) {
        perror("echo_server: epoll_ctl() failed");
        return 1;
    }

    for ( ;; ) {
        n = epoll_wait(ep, events, ECHO_MAX_EVENTS, -1);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            perror("echo_server: epoll_wait() failed");
            return 1;
        }

        for (i = 0; i < n; i++) {
            c = events[i].data.ptr;

            if (c == NULL) {
                echo_accept(ep, ls);
                continue;
            }

            if (events[i].events & (EPOLLERR | EPOLLHUP)
                && !(events[i].events & EPOLLIN))
            {
                echo_close(ep, c);
                continue;
            }

            if ((events[i].events & EPOLLIN) && echo_read(ep, c) != 0) {
                echo_close(ep, c);
                continue;
            }

            if ((events[i].events & EPOLLOUT) && echo_flush(ep, c) != 0) {
                echo_close(ep, c);
            }
        }
    }
}
