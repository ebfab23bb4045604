/*
 * test_zonelock.c -- the two locks of a shared dict zone, together, under
 * ThreadSanitizer (and ASan): hotffi's thread-side lock
 * (src/core/hotffi_zonelock.c, the real code) taken by runtime threads
 * before the zone's shm mutex, and that mutex taken alone by event loops.
 *
 * The shm mutex here follows ngx_shmtx_lock()/ngx_shmtx_unlock() as
 * Debian's nginx builds them (NGX_HAVE_GCC_ATOMIC: ngx_atomic_cmp_set()
 * is __sync_bool_compare_and_swap()): the lock word goes from 0 to the
 * locker's pid by a compare-and-swap, back to 0 by another from the pid;
 * a waiter spins, then yields.  nginx's own file cannot be linked here
 * (nginx-dev ships headers), so its protocol is restated in a few lines;
 * its unlocked pre-check `*mtx->lock == 0` is a relaxed atomic load here,
 * the same instruction on x86-64, so that TSan reports only real races.
 *
 * What is checked: threads storing the SAME pid (an event loop and the
 * runtime threads of one worker) exclude each other; the zone's "slab" (a
 * free list and live items, plain memory) is never raced on (TSan would
 * stop the test) nor corrupted (its invariants hold after every step and
 * at the end); every increment lands; and two workers' event loops and
 * runtime threads all finish: no deadlock, whatever the interleaving.
 */

#define _GNU_SOURCE

#include <sched.h>

#include "unit_helpers.h"
#include "hotffi_zonelock.h"


#define ZONE_NODES     64
#define ZONE_KEYS      4
#define OPS            4000
#define RT_THREADS     4       /* runtime threads per worker */
#define WORKERS        2


/* one item of the zone's "slab": on the free list or live */
typedef struct node_s  node_t;

struct node_s {
    node_t    *next;
    unsigned   len;
    char       data[32];     /* len bytes of one letter */
};


typedef struct {
    unsigned long   lock;    /* the shm mutex word: 0 or the holder's pid */

    /* the zone's contents, guarded by lock alone: plain memory */
    node_t          nodes[ZONE_NODES];
    node_t         *free;
    node_t         *live;
    unsigned        nfree;
    unsigned        nlive;
    double          counter[ZONE_KEYS];
} zone_t;


typedef struct {
    zone_t         *zone;
    unsigned long   pid;     /* the worker's: shared by all its threads */
    int             runtime; /* 1: takes the thread-side lock first */
    unsigned        seed;
} actor_t;


static void
zone_init(zone_t *z)
{
    unsigned  i;

    memset(z, 0, sizeof(zone_t));

    for (i = 0; i < ZONE_NODES; i++) {
        z->nodes[i].next = z->free;
        z->free = &z->nodes[i];
    }

    z->nfree = ZONE_NODES;
}


/* ngx_shmtx_lock(), the atomic path */
static void
shm_lock(zone_t *z, unsigned long pid)
{
    unsigned  n, i;

    for ( ;; ) {
        if (__atomic_load_n(&z->lock, __ATOMIC_RELAXED) == 0
            && __sync_bool_compare_and_swap(&z->lock, 0, pid))
        {
            return;
        }

        for (n = 1; n < 2048; n <<= 1) {
            for (i = 0; i < n; i++) {
                __asm__ volatile ("pause");
            }

            if (__atomic_load_n(&z->lock, __ATOMIC_RELAXED) == 0
                && __sync_bool_compare_and_swap(&z->lock, 0, pid))
            {
                return;
            }
        }

        sched_yield();
    }
}


/* ngx_shmtx_unlock() */
static void
shm_unlock(zone_t *z, unsigned long pid)
{
    assert_true(__sync_bool_compare_and_swap(&z->lock, pid, 0));
}


/* under the lock: the slab's invariants */
static void
zone_check(zone_t *z)
{
    unsigned  n, i;
    node_t   *p;

    n = 0;
    for (p = z->live; p; p = p->next) {
        for (i = 0; i < p->len; i++) {
            assert_int_equal(p->data[i], p->data[0]);
        }
        n++;
    }
    assert_int_equal(n, z->nlive);

    n = 0;
    for (p = z->free; p; p = p->next) {
        n++;
    }
    assert_int_equal(n, z->nfree);
    assert_int_equal(z->nlive + z->nfree, ZONE_NODES);
}


/* one operation, as a get/store/incr does: the zone's lock held */
static void
zone_op(zone_t *z, unsigned r)
{
    node_t  *p;

    switch (r % 3) {

    case 0:                                     /* incr */
        z->counter[(r >> 2) % ZONE_KEYS] += 1;
        break;

    case 1:                                     /* store: allocate */
        if (z->free == NULL) {
            break;
        }
        p = z->free;
        z->free = p->next;
        z->nfree--;
        p->len = 1 + (r >> 3) % sizeof(p->data);
        memset(p->data, 'a' + (int) ((r >> 5) % 26), p->len);
        p->next = z->live;
        z->live = p;
        z->nlive++;
        break;

    default:                                    /* delete: free */
        if (z->live == NULL) {
            break;
        }
        p = z->live;
        z->live = p->next;
        z->nlive--;
        p->next = z->free;
        z->free = p;
        z->nfree++;
        break;
    }

    if ((r & 63) == 0) {
        zone_check(z);
    }
}


static void *
actor_run(void *arg)
{
    actor_t   *a = arg;
    unsigned   i, r;

    for (i = 0; i < OPS; i++) {
        r = (unsigned) rand_r(&a->seed);

        if (a->runtime) {
            hotffi_zonelock_lock(a->zone);
        }

        shm_lock(a->zone, a->pid);
        zone_op(a->zone, r);
        shm_unlock(a->zone, a->pid);

        if (a->runtime) {
            hotffi_zonelock_unlock(a->zone);
        }
    }

    return NULL;
}


/*
 * Two workers (pids 1001, 1002), each an event loop and RT_THREADS runtime
 * threads, on two zones at once: every thread ends, the slabs hold, and
 * every increment is counted.
 */
static void
test_zonelock_two_locks(void **state)
{
    unsigned    w, t, k, n, z;
    zone_t     *zones;
    actor_t     actors[2][WORKERS * (1 + RT_THREADS)];
    pthread_t   tids[2][WORKERS * (1 + RT_THREADS)];
    double      sum;

    (void) state;

    zones = calloc(2, sizeof(zone_t));
    assert_non_null(zones);

    for (z = 0; z < 2; z++) {
        zone_init(&zones[z]);
        n = 0;
        for (w = 0; w < WORKERS; w++) {
            for (t = 0; t < 1 + RT_THREADS; t++) {
                actors[z][n] = (actor_t) {
                    .zone = &zones[z], .pid = 1001 + w, .runtime = t > 0,
                    .seed = 7 + z * 100 + n,
                };
                n++;
            }
        }
    }

    for (z = 0; z < 2; z++) {
        for (k = 0; k < n; k++) {
            assert_int_equal(pthread_create(&tids[z][k], NULL, actor_run,
                                            &actors[z][k]), 0);
        }
    }

    for (z = 0; z < 2; z++) {
        for (k = 0; k < n; k++) {
            assert_int_equal(pthread_join(tids[z][k], NULL), 0);
        }
    }

    for (z = 0; z < 2; z++) {
        unsigned  incrs = 0;

        /* replay each actor's choices to count its increments */
        for (k = 0; k < n; k++) {
            unsigned  seed = 7 + z * 100 + k, i;

            for (i = 0; i < OPS; i++) {
                incrs += (unsigned) rand_r(&seed) % 3 == 0;
            }
        }

        sum = 0;
        for (k = 0; k < ZONE_KEYS; k++) {
            sum += zones[z].counter[k];
        }

        assert_int_equal(zones[z].lock, 0);
        assert_true(sum == (double) incrs);
        zone_check(&zones[z]);
    }

    free(zones);
}


/* The stripe is a function of the zone's address, within bounds, and
 * zones apart spread over several stripes. */
static void
test_zonelock_stripes(void **state)
{
    unsigned   i, seen, s;
    char      *base;

    (void) state;

    base = malloc(64 * 65536);
    assert_non_null(base);

    seen = 0;
    for (i = 0; i < 64; i++) {
        s = hotffi_zonelock_stripe(base + i * 65536);
        assert_true(s < HOTFFI_ZONELOCK_N);
        assert_int_equal(s, hotffi_zonelock_stripe(base + i * 65536));
        seen |= 1u << s;
    }

    assert_true(__builtin_popcount(seen) > 1);

    free(base);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_zonelock_stripes),
        cmocka_unit_test(test_zonelock_two_locks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
