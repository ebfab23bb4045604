// Shared dicts: the lua_shared_dict zones of nginx.conf, read and written
// from any goroutine with the meaning ngx.shared.DICT gives them in Lua,
// over hotffi_shdict_*() (include/hotffi.h).  Values are what Lua holds:
// nil, bool, float64 (a Lua number; ints are taken on the way in) and
// string (a Lua string: any bytes; []byte is taken on the way in).  Each
// call takes the zone's lock for one operation, as a Lua call does
// (docs/api.md, "Shared dicts").  See docs/go.md.
package hotffi

/*
#include <stdlib.h>
#include "hotffi.h"

// weak: absent on a host without them (lua-resty-ffi); OpenDict says so
#pragma weak hotffi_shdict
#pragma weak hotffi_shdict_get
#pragma weak hotffi_shdict_store
#pragma weak hotffi_shdict_incr
#pragma weak hotffi_shdict_ttl

static int
sdk_shdict_present(void)
{
    return hotffi_shdict && hotffi_shdict_get && hotffi_shdict_store
           && hotffi_shdict_incr && hotffi_shdict_ttl;
}

// key, str: borrowed Go memory for the call; hotffi copies what it keeps.
// The value's str from get is malloc()'ed: the caller's, freed by Go.
static int
sdk_shdict_get(void *d, const char *key, size_t klen, int stale,
    hotffi_shdict_value_t *v, char *err)
{
    return hotffi_shdict_get(d, key, klen, stale, v, err, 128);
}

static int
sdk_shdict_store(void *d, int op, const char *key, size_t klen, int type,
    double number, const char *str, size_t len, unsigned flags,
    double exptime, char *err)
{
    hotffi_shdict_value_t  v = { 0 };

    v.type = type;
    v.number = number;
    v.str = (char *) str;
    v.len = len;
    v.flags = flags;
    return hotffi_shdict_store(d, op, key, klen, &v, exptime, NULL, err, 128);
}

static int
sdk_shdict_incr(void *d, const char *key, size_t klen, double by,
    double *out, int has_init, double init, double init_ttl, char *err)
{
    return hotffi_shdict_incr(d, key, klen, by, out, has_init, init,
                              init_ttl, NULL, err, 128);
}

static double
sdk_shdict_ttl(void *d, const char *key, size_t klen)
{
    return hotffi_shdict_ttl(d, key, klen);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"time"
	"unsafe"
)

// ErrNotFound is returned by Replace, Incr (without init) and TTL for a key
// that does not exist, as Lua answers "not found".
var ErrNotFound = errors.New("not found")

// ErrExists is returned by Add and SafeAdd for a key that exists.
var ErrExists = errors.New("exists")

// Dict is one lua_shared_dict zone.  Safe for concurrent use; good for the
// worker's life.
type Dict struct {
	zone unsafe.Pointer // hotffi's, never dereferenced here
	name string
}

// OpenDict returns the lua_shared_dict zone name, or an error when nginx.conf
// has none by that name or the host is not hotffi.
func OpenDict(name string) (*Dict, error) {
	if C.sdk_shdict_present() == 0 {
		return nil, errors.New("hotffi: the host has no hotffi_shdict (not hotffi?)")
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	zone := C.hotffi_shdict(cname)
	if zone == nil {
		return nil, fmt.Errorf("hotffi: no lua_shared_dict named %q", name)
	}
	return &Dict{zone: zone, name: name}, nil
}

// Name is the zone's name in nginx.conf.
func (d *Dict) Name() string { return d.name }

// bytesOf borrows s's bytes for one C call (nil for "": hotffi reads no
// byte of an empty string).
func bytesOf(s string) (*C.char, C.size_t) {
	if len(s) == 0 {
		return nil, 0
	}
	return (*C.char)(*(*unsafe.Pointer)(unsafe.Pointer(&s))), C.size_t(len(s))
}

func (d *Dict) fail(op string, err *C.char) error {
	return fmt.Errorf("hotffi: shared dict %s %s: %s", d.name, op, C.GoString(err))
}

func (d *Dict) get(key string, stale bool) (any, uint32, bool, error) {
	var v C.hotffi_shdict_value_t
	var errbuf [128]C.char
	k, klen := bytesOf(key)
	st := C.int(0)
	if stale {
		st = 1
	}
	if C.sdk_shdict_get(d.zone, k, klen, st, &v, &errbuf[0]) != C.HOTFFI_SHDICT_OK {
		return nil, 0, false, d.fail("get", &errbuf[0])
	}
	var value any
	switch v._type {
	case C.HOTFFI_SHDICT_BOOLEAN:
		value = v.number != 0
	case C.HOTFFI_SHDICT_NUMBER:
		value = float64(v.number)
	case C.HOTFFI_SHDICT_STRING:
		value = C.GoStringN(v.str, C.int(v.len))
		C.free(unsafe.Pointer(v.str)) // malloc()'ed by hotffi, ours
	}
	return value, uint32(v.flags), v.stale != 0, nil
}

// Get is DICT:get(key): the value (nil when there is no such key or it
// expired) and its flags.
func (d *Dict) Get(key string) (value any, flags uint32, err error) {
	value, flags, _, err = d.get(key, false)
	return
}

// GetStale is DICT:get_stale(key): also an expired value not yet evicted,
// with stale true.
func (d *Dict) GetStale(key string) (value any, flags uint32, stale bool, err error) {
	return d.get(key, true)
}

// seconds is an exptime for hotffi: 0 never expires.
func seconds(t time.Duration) (C.double, error) {
	if t < 0 {
		return 0, errors.New("negative exptime")
	}
	return C.double(t.Seconds()), nil
}

func (d *Dict) store(op C.int, name, key string, value any, exptime time.Duration, flags uint32) error {
	var errbuf [128]C.char
	var typ C.int
	var num C.double
	var str string
	switch v := value.(type) {
	case nil:
		typ = C.HOTFFI_SHDICT_NIL
	case bool:
		typ = C.HOTFFI_SHDICT_BOOLEAN
		if v {
			num = 1
		}
	case float64:
		typ, num = C.HOTFFI_SHDICT_NUMBER, C.double(v)
	case float32:
		typ, num = C.HOTFFI_SHDICT_NUMBER, C.double(v)
	case int:
		typ, num = C.HOTFFI_SHDICT_NUMBER, C.double(v)
	case int64:
		typ, num = C.HOTFFI_SHDICT_NUMBER, C.double(v)
	case int32:
		typ, num = C.HOTFFI_SHDICT_NUMBER, C.double(v)
	case uint32:
		typ, num = C.HOTFFI_SHDICT_NUMBER, C.double(v)
	case uint64:
		typ, num = C.HOTFFI_SHDICT_NUMBER, C.double(v)
	case string:
		typ, str = C.HOTFFI_SHDICT_STRING, v
	case []byte:
		typ, str = C.HOTFFI_SHDICT_STRING, string(v)
	default:
		return fmt.Errorf("hotffi: shared dict %s %s: a shared dict holds nil, bool, numbers, string or []byte, not %T", d.name, name, value)
	}
	exp, err := seconds(exptime)
	if err != nil {
		return fmt.Errorf("hotffi: shared dict %s %s: %w", d.name, name, err)
	}
	k, klen := bytesOf(key)
	s, slen := bytesOf(str)
	rc := C.sdk_shdict_store(d.zone, op, k, klen, typ, num, s, slen, C.uint(flags), exp, &errbuf[0])
	switch {
	case rc == C.HOTFFI_SHDICT_OK:
		return nil
	case rc == C.HOTFFI_SHDICT_DECLINED && op == C.HOTFFI_SHDICT_REPLACE:
		return ErrNotFound
	case rc == C.HOTFFI_SHDICT_DECLINED:
		return ErrExists
	}
	return d.fail(name, &errbuf[0])
}

// Set is DICT:set(key, value, exptime, flags); exptime 0 never expires, a
// nil value deletes the key.  Other items may be evicted to make room.
func (d *Dict) Set(key string, value any, exptime time.Duration, flags uint32) error {
	return d.store(C.HOTFFI_SHDICT_SET, "set", key, value, exptime, flags)
}

// SafeSet is DICT:safe_set(): Set that never evicts ("no memory" instead).
func (d *Dict) SafeSet(key string, value any, exptime time.Duration, flags uint32) error {
	return d.store(C.HOTFFI_SHDICT_SAFE_SET, "safe_set", key, value, exptime, flags)
}

// Add is DICT:add(): Set only if the key does not exist, else ErrExists.
func (d *Dict) Add(key string, value any, exptime time.Duration, flags uint32) error {
	return d.store(C.HOTFFI_SHDICT_ADD, "add", key, value, exptime, flags)
}

// SafeAdd is DICT:safe_add(): Add that never evicts.
func (d *Dict) SafeAdd(key string, value any, exptime time.Duration, flags uint32) error {
	return d.store(C.HOTFFI_SHDICT_SAFE_ADD, "safe_add", key, value, exptime, flags)
}

// Replace is DICT:replace(): Set only if the key exists, else ErrNotFound.
func (d *Dict) Replace(key string, value any, exptime time.Duration, flags uint32) error {
	return d.store(C.HOTFFI_SHDICT_REPLACE, "replace", key, value, exptime, flags)
}

// Delete is DICT:delete(key).
func (d *Dict) Delete(key string) error {
	return d.store(C.HOTFFI_SHDICT_SET, "delete", key, nil, 0, 0)
}

func (d *Dict) incr(key string, by float64, hasInit bool, init float64, initTTL time.Duration) (float64, error) {
	var errbuf [128]C.char
	var out C.double
	ttl, err := seconds(initTTL)
	if err != nil {
		return 0, fmt.Errorf("hotffi: shared dict %s incr: %w", d.name, err)
	}
	hi := C.int(0)
	if hasInit {
		hi = 1
	}
	k, klen := bytesOf(key)
	switch C.sdk_shdict_incr(d.zone, k, klen, C.double(by), &out, hi, C.double(init), ttl, &errbuf[0]) {
	case C.HOTFFI_SHDICT_OK:
		return float64(out), nil
	case C.HOTFFI_SHDICT_DECLINED:
		return 0, ErrNotFound
	}
	return 0, d.fail("incr", &errbuf[0])
}

// Incr is DICT:incr(key, by): the new value; ErrNotFound when there is no
// such key.
func (d *Dict) Incr(key string, by float64) (float64, error) {
	return d.incr(key, by, false, 0, 0)
}

// IncrInit is DICT:incr(key, by, init, init_ttl): a missing key starts at
// init (and expires after initTTL, 0 never) before by is added.
func (d *Dict) IncrInit(key string, by, init float64, initTTL time.Duration) (float64, error) {
	return d.incr(key, by, true, init, initTTL)
}

// TTL is DICT:ttl(key): the time left, 0 for a key that never expires,
// ErrNotFound for no such key.
func (d *Dict) TTL(key string) (time.Duration, error) {
	k, klen := bytesOf(key)
	left := float64(C.sdk_shdict_ttl(d.zone, k, klen))
	if left < 0 {
		return 0, ErrNotFound
	}
	return time.Duration(left * float64(time.Second)), nil
}
