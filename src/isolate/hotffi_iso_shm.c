/*
 * hotffi_iso_shm.c -- the shared mapping's layout (see hotffi_iso_shm.h).
 */

#include <string.h>

#include "hotffi_iso_shm.h"


#define HOTFFI_ISO_PAGE  4096
#define HOTFFI_ISO_PAGE_UP(n) \
    (((n) + HOTFFI_ISO_PAGE - 1) & ~(uint64_t) (HOTFFI_ISO_PAGE - 1))


static uint64_t
hotffi_iso_shm_cancels_at(uint64_t cfg_len, uint64_t state_len)
{
    return (sizeof(hotffi_iso_shm_t) + cfg_len + 1 + state_len + 63)
           & ~(uint64_t) 63;
}


static uint64_t
hotffi_iso_shm_rings_at(uint64_t cfg_len, uint64_t state_len,
    uint64_t slots)
{
    return HOTFFI_ISO_PAGE_UP(hotffi_iso_shm_cancels_at(cfg_len, state_len)
                              + slots * sizeof(uint64_t));
}


uint64_t
hotffi_iso_shm_size(uint64_t cfg_len, uint64_t state_len, uint64_t slots,
    uint64_t ring_size)
{
    return hotffi_iso_shm_rings_at(cfg_len, state_len, slots)
           + 2 * ring_size;
}


_Atomic uint64_t *
hotffi_iso_shm_cancels(hotffi_iso_shm_t *shm)
{
    return (_Atomic uint64_t *) ((unsigned char *) shm
                                 + hotffi_iso_shm_cancels_at(shm->cfg_len,
                                                             shm->state_len));
}


void
hotffi_iso_shm_rings(hotffi_iso_shm_t *shm, hotffi_ring_t *req,
    hotffi_ring_t *ans, int reset)
{
    unsigned char  *data;

    data = (unsigned char *) shm
           + hotffi_iso_shm_rings_at(shm->cfg_len, shm->state_len,
                                     shm->slots);

    hotffi_ring_attach(req, &shm->req, data, shm->ring_size, reset);
    hotffi_ring_attach(ans, &shm->ans, data + shm->ring_size,
                       shm->ring_size, reset);
}


int
hotffi_iso_shm_check(const hotffi_iso_shm_t *shm, uint64_t size)
{
    if (size < sizeof(hotffi_iso_shm_t)
        || shm->magic != HOTFFI_ISO_MAGIC
        || shm->version != HOTFFI_ISO_VERSION
        || shm->ring_size < 4096
        || (shm->ring_size & (shm->ring_size - 1)) != 0
        || shm->cfg_len > size
        || shm->state_len > size
        || shm->ring_size > size
        || shm->slots == 0
        || shm->slots > size
        || shm->total != size
        || hotffi_iso_shm_size(shm->cfg_len, shm->state_len, shm->slots,
                               shm->ring_size)
           != size
        || memchr(shm->lib, '\0', sizeof(shm->lib)) == NULL)
    {
        return HOTFFI_ERROR;
    }

    return HOTFFI_OK;
}
