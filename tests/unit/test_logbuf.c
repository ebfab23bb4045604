/*
 * test_logbuf.c -- runtimes' log lines: kept in order at their level, cut
 * with a marker, bounded in lines and bytes with the drops counted, and,
 * from many threads at once, every line either written intact or counted
 * as dropped: lines + dropped = sent; and the same through the ABI, the
 * hub's eventfd and its drain.
 */

#define _GNU_SOURCE

#include <stdio.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "unit_helpers.h"
#include "hotffi_logbuf.h"


#define SINK_MAX  (HOTFFI_LOGBUF_LINES + 2)


/* what a drain handed out: the lines and their levels, in order */
typedef struct {
    unsigned   n;
    int        level[SINK_MAX];
    char      *text[SINK_MAX];  /* NUL-terminated copies */
    size_t     len[SINK_MAX];
} sink_t;


static void
sink_line(void *ctx, int level, const char *line, size_t len)
{
    sink_t  *s = ctx;

    assert_true(s->n < SINK_MAX);
    s->level[s->n] = level;
    s->len[s->n] = len;
    s->text[s->n] = malloc(len + 1);
    assert_non_null(s->text[s->n]);
    memcpy(s->text[s->n], line, len);
    s->text[s->n][len] = '\0';
    s->n++;
}


static void
sink_free(sink_t *s)
{
    unsigned  i;

    for (i = 0; i < s->n; i++) {
        free(s->text[i]);
    }

    s->n = 0;
}


static int
push(hotffi_logbuf_t *lb, int level, const char *prefix, const char *msg)
{
    return hotffi_logbuf_push(lb, level, prefix, strlen(prefix), msg,
                              strlen(msg));
}


/* lines come out in order, at their level; only the first wakes */
static void
test_logbuf_order(void **state)
{
    sink_t           s = { 0 };
    hotffi_logbuf_t  lb;

    assert_int_equal(hotffi_logbuf_init(&lb, HOTFFI_LEVEL_NOTICE), HOTFFI_OK);

    assert_true(hotffi_logbuf_wants(&lb, HOTFFI_LEVEL_ERR));
    assert_true(hotffi_logbuf_wants(&lb, HOTFFI_LEVEL_NOTICE));
    assert_false(hotffi_logbuf_wants(&lb, HOTFFI_LEVEL_INFO));

    assert_int_equal(push(&lb, HOTFFI_LEVEL_ERR, "a: ", "one"), 1);
    assert_int_equal(push(&lb, HOTFFI_LEVEL_WARN, "", "two\nlines"), 0);
    assert_int_equal(hotffi_logbuf_push(&lb, HOTFFI_LEVEL_NOTICE, "b: ", 3,
                                        "nul\0byte", 8), 0);

    assert_int_equal(hotffi_logbuf_drain(&lb, sink_line, &s), 3);
    assert_int_equal(s.level[0], HOTFFI_LEVEL_ERR);
    assert_string_equal(s.text[0], "a: one");
    assert_int_equal(s.level[1], HOTFFI_LEVEL_WARN);
    assert_string_equal(s.text[1], "two\nlines");
    assert_int_equal(s.level[2], HOTFFI_LEVEL_NOTICE);
    assert_int_equal(s.len[2], 11);
    assert_memory_equal(s.text[2], "b: nul\0byte", 11);
    sink_free(&s);

    /* empty again: nothing handed out, and the next line wakes */
    assert_int_equal(hotffi_logbuf_drain(&lb, sink_line, &s), 0);
    assert_int_equal(push(&lb, HOTFFI_LEVEL_ERR, "", "again"), 1);
    assert_int_equal(hotffi_logbuf_drain(&lb, sink_line, &s), 1);
    sink_free(&s);

    hotffi_logbuf_free(&lb);
}


/* a host that keeps no lines allocates nothing and wants none */
static void
test_logbuf_off(void **state)
{
    hotffi_logbuf_t  lb;

    assert_int_equal(hotffi_logbuf_init(&lb, 0), HOTFFI_OK);
    assert_null(lb.fill);
    assert_false(hotffi_logbuf_wants(&lb, HOTFFI_LEVEL_EMERG));
    hotffi_logbuf_free(&lb);

    /* above debug (nginx's debug bits) is debug */
    assert_int_equal(hotffi_logbuf_init(&lb, 0x7ffffff0), HOTFFI_OK);
    assert_true(hotffi_logbuf_wants(&lb, HOTFFI_LEVEL_DEBUG));
    assert_false(hotffi_logbuf_wants(&lb, HOTFFI_LEVEL_DEBUG + 1));
    hotffi_logbuf_free(&lb);
}


/* a long line keeps its start, within the limit, and says what was cut */
static void
test_logbuf_cut(void **state)
{
    char             *msg, mark[64];
    size_t            len, cut;
    sink_t            s = { 0 };
    hotffi_logbuf_t   lb;

    assert_int_equal(hotffi_logbuf_init(&lb, HOTFFI_LEVEL_DEBUG), HOTFFI_OK);

    msg = malloc(5000);
    assert_non_null(msg);
    memset(msg, 'x', 5000);

    (void) hotffi_logbuf_push(&lb, HOTFFI_LEVEL_INFO, "p: ", 3, msg, 5000);
    assert_int_equal(hotffi_logbuf_drain(&lb, sink_line, &s), 1);

    len = strlen(s.text[0]);
    assert_true(len <= HOTFFI_LOGBUF_LINE_MAX);
    assert_memory_equal(s.text[0], "p: xxx", 6);

    cut = 5003 - (size_t) (strstr(s.text[0], " [...") - s.text[0]);
    (void) snprintf(mark, sizeof(mark), " [... %zu bytes cut]", cut);
    assert_string_equal(s.text[0] + len - strlen(mark), mark);

    sink_free(&s);
    free(msg);
    hotffi_logbuf_free(&lb);
}


/* full by lines, then by bytes: the rest is dropped, counted, reported */
static void
test_logbuf_full(void **state)
{
    int              i, fit;
    char             big[1000];
    sink_t           s = { 0 };
    hotffi_logbuf_t  lb;

    assert_int_equal(hotffi_logbuf_init(&lb, HOTFFI_LEVEL_DEBUG), HOTFFI_OK);

    for (i = 0; i < HOTFFI_LOGBUF_LINES + 10; i++) {
        (void) push(&lb, HOTFFI_LEVEL_ERR, "", "short");
    }

    assert_int_equal(hotffi_logbuf_drain(&lb, sink_line, &s),
                     HOTFFI_LOGBUF_LINES + 1);
    assert_int_equal(s.level[HOTFFI_LOGBUF_LINES], HOTFFI_LEVEL_WARN);
    assert_string_equal(s.text[HOTFFI_LOGBUF_LINES],
                        "10 runtime log lines dropped: the buffer was full");
    sink_free(&s);

    /* the count starts again after a drain */
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    fit = HOTFFI_LOGBUF_BYTES / (int) (sizeof(big) - 1 + 8);

    for (i = 0; i < fit + 3; i++) {
        (void) push(&lb, HOTFFI_LEVEL_ERR, "", big);
    }

    assert_int_equal(hotffi_logbuf_drain(&lb, sink_line, &s), fit + 1);
    assert_string_equal(s.text[fit],
                        "3 runtime log lines dropped: the buffer was full");
    sink_free(&s);

    hotffi_logbuf_free(&lb);
}


#define WRITERS  8
#define PER      20000


typedef struct {
    hotffi_logbuf_t  *lb;
    int               efd;
    int               id;
} writer_t;


/* the drainer's tally: no lock, one thread writes it */
typedef struct {
    uint64_t   lines;
    uint64_t   dropped;
    long       last[WRITERS];   /* each writer's lines come in order */
    unsigned   bad;
} tally_t;


static void
tally_line(void *ctx, int level, const char *line, size_t len)
{
    int                 id;
    long                seq;
    char                buf[128];
    unsigned long long  n;
    tally_t            *t = ctx;

    assert_true(len < sizeof(buf));
    memcpy(buf, line, len);
    buf[len] = '\0';

    if (sscanf(buf, "%llu runtime log lines dropped", &n) == 1) {
        t->dropped += n;
        return;
    }

    /* "wN: line SEQ of writer N", intact */
    if (sscanf(buf, "w%d: line %ld of writer", &id, &seq) != 2
        || id < 0 || id >= WRITERS || seq <= t->last[id]
        || level != HOTFFI_LEVEL_ERR + id % 4)
    {
        t->bad++;
        return;
    }

    t->last[id] = seq;
    t->lines++;
}


static void *
writer(void *data)
{
    int        i, n;
    char       prefix[16], msg[64];
    uint64_t   one = 1;
    writer_t  *w = data;

    n = snprintf(prefix, sizeof(prefix), "w%d: ", w->id);

    for (i = 0; i < PER; i++) {
        (void) snprintf(msg, sizeof(msg), "line %d of writer %d", i, w->id);

        if (hotffi_logbuf_push(w->lb, HOTFFI_LEVEL_ERR + w->id % 4, prefix,
                               (size_t) n, msg, strlen(msg)))
        {
            assert_int_equal(write(w->efd, &one, sizeof(one)), sizeof(one));
        }
    }

    return NULL;
}


/* many threads at once: every line intact and in order, or counted */
static void
test_logbuf_threads(void **state)
{
    int               i, efd, stop;
    tally_t           t;
    uint64_t          count;
    pthread_t         tids[WRITERS];
    writer_t          w[WRITERS];
    hotffi_logbuf_t   lb;

    memset(&t, 0, sizeof(t));

    for (i = 0; i < WRITERS; i++) {
        t.last[i] = -1;
    }

    assert_int_equal(hotffi_logbuf_init(&lb, HOTFFI_LEVEL_DEBUG), HOTFFI_OK);
    efd = eventfd(0, EFD_CLOEXEC);
    assert_true(efd != -1);

    for (i = 0; i < WRITERS; i++) {
        w[i].lb = &lb;
        w[i].efd = efd;
        w[i].id = i;
        assert_int_equal(pthread_create(&tids[i], NULL, writer, &w[i]), 0);
    }

    /* this thread drains as the event loop would, woken by the pushes */
    for (stop = 0; !stop; ) {
        assert_int_equal(read(efd, &count, sizeof(count)), sizeof(count));
        (void) hotffi_logbuf_drain(&lb, tally_line, &t);

        stop = t.lines + t.dropped == (uint64_t) WRITERS * PER;
    }

    for (i = 0; i < WRITERS; i++) {
        assert_int_equal(pthread_join(tids[i], NULL), 0);
    }

    assert_int_equal(t.bad, 0);
    assert_int_equal(t.lines + t.dropped, (uint64_t) WRITERS * PER);
    assert_int_equal(hotffi_logbuf_drain(&lb, tally_line, &t), 0);

    (void) close(efd);
    hotffi_logbuf_free(&lb);
}


/* ---- through the ABI: hotffi_log(), the hub's eventfd and drain */

#define ABI_THREADS  4
#define ABI_PER      5000


/* the host's side: what its line hook saw; the event loop's only */
typedef struct {
    uint64_t   named;       /* `runtime "rt&cfg" v3: t<i> <n>` at warn */
    uint64_t   nameless;    /* tq NULL: "nobody <n>", at emerg */
    uint64_t   dropped;
    uint64_t   bad;
} abi_tally_t;


static abi_tally_t  abi_tally;


static void
abi_line(void *ctx, int level, const char *line, size_t len)
{
    int                 id;
    long                seq;
    char                buf[256];
    unsigned long long  n;

    assert_true(len < sizeof(buf));
    memcpy(buf, line, len);
    buf[len] = '\0';

    if (sscanf(buf, "%llu runtime log lines dropped", &n) == 1) {
        abi_tally.dropped += n;

    } else if (sscanf(buf, "runtime \"rt&cfg\" v3: t%d %ld", &id, &seq) == 2
               && level == HOTFFI_LEVEL_WARN)
    {
        abi_tally.named++;

    } else if (sscanf(buf, "nobody %ld", &seq) == 1
               && level == HOTFFI_LEVEL_EMERG)
    {
        abi_tally.nameless++;

    } else {
        abi_tally.bad++;
    }
}


static void *
abi_writer(void *tq)
{
    int   i, n;
    char  msg[64];

    for (i = 0; i < ABI_PER; i++) {
        n = snprintf(msg, sizeof(msg), "t%d %d", (int) (i % 7), i);

        /* kept: warn; filtered before the copy: info, and 99 (debug) */
        hotffi_log(tq, HOTFFI_LEVEL_WARN, msg, n);
        hotffi_log(tq, HOTFFI_LEVEL_INFO, msg, n);
        hotffi_log(tq, 99, msg, 0);

        /* a line of no runtime, level below 1 counted as emerg */
        if (i % 100 == 0) {
            n = snprintf(msg, sizeof(msg), "nobody %d", i);
            hotffi_log(NULL, 0, msg, 0);
        }
    }

    hotffi_log(tq, HOTFFI_LEVEL_ERR, NULL, 5);   /* writes nothing */

    return NULL;
}


static int
abi_all_seen(void *data)
{
    return abi_tally.named + abi_tally.nameless + abi_tally.dropped
           == (uint64_t) ABI_THREADS * (ABI_PER + ABI_PER / 100);
}


/*
 * Runtime threads log through the ABI while this thread is the event loop:
 * lines arrive with the runtime's name and version, at their level, those
 * below the host's level never, and every line is written or counted.
 */
static void
test_logbuf_abi(void **state)
{
    int                i;
    const char        *err;
    pthread_t          tids[ABI_THREADS];
    hotffi_hub_t      *hub;
    hotffi_host_t      host;
    hotffi_version_t  *v;

    memset(&host, 0, sizeof(host));
    memset(&abi_tally, 0, sizeof(abi_tally));
    host.line = abi_line;
    host.line_level = HOTFFI_LEVEL_WARN;

    hub = hotffi_hub_create(&host, &err);
    assert_non_null(hub);
    assert_ptr_equal(hotffi_hub_process(), hub);

    /* the fields hotffi_log() reads of a version: its tq is the port */
    v = calloc(1, sizeof(hotffi_version_t));
    assert_non_null(v);
    v->owner.hub = hub;
    v->owner.name = "rt&cfg";
    v->number = 3;

    for (i = 0; i < ABI_THREADS; i++) {
        assert_int_equal(pthread_create(&tids[i], NULL, abi_writer,
                                        &v->port), 0);
    }

    /* drained only when the eventfd says so: a lost wake-up fails */
    while (!abi_all_seen(NULL)) {
        if (!unit_readable(hotffi_hub_fd(hub), UNIT_WAIT_MS)) {
            fail_msg("no wake-up, %llu lines seen",
                     (unsigned long long) (abi_tally.named
                                           + abi_tally.nameless));
        }

        (void) hotffi_hub_drain(hub);
    }

    for (i = 0; i < ABI_THREADS; i++) {
        (void) unit_join(tids[i], UNIT_WAIT_MS);
    }

    (void) hotffi_hub_drain(hub);
    assert_int_equal(abi_tally.bad, 0);
    assert_true(abi_all_seen(NULL));

    free(v);
    hotffi_hub_destroy(hub);
    assert_null(hotffi_hub_process());
}


/* a host without a line hook keeps nothing, and nothing is copied */
static void
test_logbuf_abi_off(void **state)
{
    const char     *err;
    hotffi_hub_t   *hub;
    hotffi_host_t   host;

    memset(&host, 0, sizeof(host));
    hub = hotffi_hub_create(&host, &err);
    assert_non_null(hub);

    hotffi_log(NULL, HOTFFI_LEVEL_EMERG, "lost", 4);
    assert_false(atomic_load(&hub->log.ready));
    assert_null(hub->log.fill);

    hotffi_hub_destroy(hub);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_logbuf_order),
        cmocka_unit_test(test_logbuf_off),
        cmocka_unit_test(test_logbuf_cut),
        cmocka_unit_test(test_logbuf_full),
        cmocka_unit_test(test_logbuf_threads),
        cmocka_unit_test(test_logbuf_abi),
        cmocka_unit_test(test_logbuf_abi_off),
    };

    unit_init();

    return cmocka_run_group_tests_name("logbuf", tests, NULL, NULL);
}
