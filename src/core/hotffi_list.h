/*
 * hotffi_list.h -- the core's one list: intrusive, doubly linked and
 * circular around a sentinel (the shape of nginx's ngx_queue.h).
 *
 * DESIGN
 * A struct that goes on a list embeds a hotffi_list_t link; the list itself
 * is a hotffi_list_t sentinel whose next is the first element and whose prev
 * is the last, both the sentinel itself when the list is empty.  Every
 * operation is O(1) and allocates nothing.  hotffi_list_remove() leaves the
 * link pointing at itself, so a link initialised once says whether its
 * struct is on a list (hotffi_list_linked()).  hotffi_list_data() turns a
 * link back into its struct.
 *
 * locks: none; whoever owns a list guards it (each list says how).
 */

#ifndef HOTFFI_LIST_H
#define HOTFFI_LIST_H


#include <stddef.h>


typedef struct hotffi_list_s  hotffi_list_t;

struct hotffi_list_s {
    hotffi_list_t  *prev;
    hotffi_list_t  *next;
};


/* the struct of type `type` whose member `field` is link */
#define hotffi_list_data(link, type, field)                                   \
    ((type *) (void *) ((char *) (link) - offsetof(type, field)))


/* thread: the list's owner.  An empty list, or a link on none. */
static inline void
hotffi_list_init(hotffi_list_t *l)
{
    l->prev = l;
    l->next = l;
}


/* thread: the list's owner */
static inline int
hotffi_list_empty(const hotffi_list_t *l)
{
    return l->next == l;
}


/* thread: the link's owner.  Whether the (initialised) link is on a list. */
static inline int
hotffi_list_linked(const hotffi_list_t *link)
{
    return link->next != link;
}


/* thread: the list's owner.  The first link; the sentinel when empty. */
static inline hotffi_list_t *
hotffi_list_first(hotffi_list_t *l)
{
    return l->next;
}


/* thread: the list's owner */
static inline void
hotffi_list_insert_head(hotffi_list_t *l, hotffi_list_t *link)
{
    link->next = l->next;
    link->prev = l;
    l->next->prev = link;
    l->next = link;
}


/* thread: the list's owner */
static inline void
hotffi_list_insert_tail(hotffi_list_t *l, hotffi_list_t *link)
{
    link->prev = l->prev;
    link->next = l;
    l->prev->next = link;
    l->prev = link;
}


/* thread: the list's owner.  link must be on a list. */
static inline void
hotffi_list_remove(hotffi_list_t *link)
{
    link->next->prev = link->prev;
    link->prev->next = link->next;
    hotffi_list_init(link);
}


/* thread: the list's owner.  Takes the first link off l; NULL when empty. */
static inline hotffi_list_t *
hotffi_list_pop(hotffi_list_t *l)
{
    hotffi_list_t  *link;

    if (hotffi_list_empty(l)) {
        return NULL;
    }

    link = l->next;
    hotffi_list_remove(link);

    return link;
}


/*
 * thread: the owner of both.  Moves every link of src, in order, to the
 * empty list dst; src is left empty.
 */
static inline void
hotffi_list_move(hotffi_list_t *dst, hotffi_list_t *src)
{
    if (hotffi_list_empty(src)) {
        hotffi_list_init(dst);
        return;
    }

    dst->next = src->next;
    dst->prev = src->prev;
    dst->next->prev = dst;
    dst->prev->next = dst;
    hotffi_list_init(src);
}


#endif /* HOTFFI_LIST_H */
