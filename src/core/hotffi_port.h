/*
 * hotffi_port.h -- one version of a runtime's view of its request queue:
 * the `tq` the ABI hands to libffi_init() and poll().
 *
 * DESIGN
 * The queue belongs to the runtime and outlives its versions, so that a
 * reload never moves or loses a queued call; each version polls through a
 * port of its own.  Stopping a port makes every poll through it return NULL
 * at once, while the tasks still queued wait for the next version's port
 * (stopping the queue itself, on unload, stops every port once the queue is
 * empty).  The per-version ABI data (init error, the runtime's pointer, the
 * state handed over) lives here too, because each version has its own.
 */

#ifndef HOTFFI_PORT_H
#define HOTFFI_PORT_H


#include "hotffi_core.h"
#include "hotffi_poller.h"


struct hotffi_port_s {
    hotffi_queue_t  *queue;        /* the runtime's; outlives the port */
    hotffi_hub_t    *hub;          /* the worker's; outlives the port */
    unsigned         stopped;      /* locks: queue->mtx */

    /*
     * locks: queue->mtx.  Set once libffi_init() returned 0: until then
     * the version's threads wait in poll, so that a version whose init
     * fails never takes a task (a reload's queued calls wait for the
     * version that really starts).
     */
    unsigned         open;

    /* hotffi_init_error()'s copy, HOTFFI_ERR_MAX bytes, read after init,
       or after retire (the hub's mutex orders the init thread's or the
       reaper's write before the event loop reads) */
    char            *init_error;

    /* the runtime's, through hotffi_tq_set_data(); set before its threads */
    void            *data;

    /* hotffi_state(): borrowed from the reload, during libffi_init() only */
    const char      *state;
    size_t           state_len;
    unsigned         rollback:1;   /* hotffi_rollback(), set before init */

    /* the threads serving this port, where they must be proved gone */
    hotffi_pollers_t  pollers;

    /*
     * A port the event loop serves itself (hotffi_direct.h), or NULL: set
     * inside libffi_init(), before the port opens; the version's, freed
     * with it.
     */
    hotffi_direct_t  *direct;
};


#endif /* HOTFFI_PORT_H */
