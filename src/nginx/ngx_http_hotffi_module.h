/*
 * ngx_http_hotffi_module.h -- what the module's two files share: the
 * worker's hub, lua-nginx-module's semaphore functions and the yield.
 */

#ifndef NGX_HTTP_HOTFFI_MODULE_H
#define NGX_HTTP_HOTFFI_MODULE_H


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "hotffi_core.h"


/* bumped with every change of the FFI functions lua/resty/hotffi.lua calls */
#define NGX_HTTP_HOTFFI_FFI_VERSION  8

/* the functions Lua calls: the rest of the module builds hidden */
#define NGX_HTTP_HOTFFI_EXPORT  __attribute__((visibility("default")))


/*
 * lua-nginx-module's public FFI for ngx.semaphore, the documented way to
 * park and resume a Lua coroutine; found with dlsym() because the lua module
 * is itself a dynamic module loaded before this one.
 */
typedef struct {
    int    (*create)(void **psem, int n, char **errmsg);
    int    (*post)(void *sem, int n);
    void   (*gc)(void *sem);
} ngx_http_hotffi_sema_api_t;


extern ngx_module_t                 ngx_http_hotffi_module;
extern hotffi_hub_t                *ngx_http_hotffi_hub;
extern ngx_http_hotffi_sema_api_t   ngx_http_hotffi_sema;


hotffi_hub_t *ngx_http_hotffi_hub_get(void);

/* thread: event loop.  Ends the yield (ngx_http_hotffi_yield.c). */
void ngx_http_hotffi_yield_exit(void);


#endif /* NGX_HTTP_HOTFFI_MODULE_H */
