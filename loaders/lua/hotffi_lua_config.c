/*
 * hotffi_lua_config.c -- a Lua service's configuration, the
 * lua-resty-ffi-style "module[?][,function[,cfg]]":
 *
 *   /srv/svc/thumbs?,init,size=128
 *
 * module is the service's file (".lua" is added when it does not end so;
 * a relative path is taken from nginx's working directory); a "?" after
 * it re-reads the file on every load, including an in-place reload with
 * the same cfg; without it the code read first is kept for the process's
 * life.  function (default "init") is the module's function that starts
 * the service; cfg, everything after the second comma (commas included),
 * is the string it receives, or nil when there is no second comma.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi_lua.h"


#define HOTFFI_LUA_DEFAULT_FUNCTION  "init"


static char *
hotffi_lua_strndup(const char *s, size_t n)
{
    char  *p;

    p = malloc(n + 1);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, s, n);
    p[n] = '\0';

    return p;
}


/*
 * thread: the init thread.
 * cfg: borrowed; what svc keeps is copied (svc->cfg, path, function, arg:
 * ours, freed by hotffi_lua_svc_free()).
 */
int
hotffi_lua_config_parse(hotffi_lua_svc_t *svc, const char *cfg,
    int *reread, char *err, size_t errlen)
{
    size_t       mlen, flen, i;
    const char  *comma, *comma2, *f;

    *reread = 0;

    if (cfg == NULL || cfg[0] == '\0' || cfg[0] == ',') {
        (void) snprintf(err, errlen, "no module: \"module[?][,function"
                        "[,cfg]]\" expected");
        return HOTFFI_LUA_ERROR;
    }

    comma = strchr(cfg, ',');
    mlen = comma ? (size_t) (comma - cfg) : strlen(cfg);
    comma2 = comma ? strchr(comma + 1, ',') : NULL;

    if (mlen > 0 && cfg[mlen - 1] == '?') {
        *reread = 1;
        mlen--;
    }

    if (mlen == 0) {
        (void) snprintf(err, errlen, "no module before \"?\"");
        return HOTFFI_LUA_ERROR;
    }

    f = comma ? comma + 1 : HOTFFI_LUA_DEFAULT_FUNCTION;
    flen = comma == NULL ? strlen(f)
           : comma2 ? (size_t) (comma2 - comma - 1) : strlen(f);

    if (flen == 0) {
        f = HOTFFI_LUA_DEFAULT_FUNCTION;
        flen = strlen(f);
    }

    for (i = 0; i < flen; i++) {
        if (!(f[i] == '_' || (f[i] >= 'a' && f[i] <= 'z')
              || (f[i] >= 'A' && f[i] <= 'Z')
              || (i > 0 && f[i] >= '0' && f[i] <= '9')))
        {
            (void) snprintf(err, errlen, "bad function name \"%.*s\"",
                            (int) flen, f);
            return HOTFFI_LUA_ERROR;
        }
    }

    svc->cfg = strdup(cfg);
    svc->function = hotffi_lua_strndup(f, flen);
    svc->arg = comma2 ? strdup(comma2 + 1) : NULL;

    if (mlen > 4 && memcmp(cfg + mlen - 4, ".lua", 4) == 0) {
        svc->path = hotffi_lua_strndup(cfg, mlen);

    } else {
        svc->path = malloc(mlen + 5);
        if (svc->path != NULL) {
            memcpy(svc->path, cfg, mlen);
            memcpy(svc->path + mlen, ".lua", 5);
        }
    }

    if (svc->cfg == NULL || svc->function == NULL || svc->path == NULL
        || (comma2 && svc->arg == NULL))
    {
        (void) snprintf(err, errlen, "out of memory");
        return HOTFFI_LUA_ERROR;
    }

    return HOTFFI_LUA_OK;
}
