/*
 * runtime_lua.c — require "vibex.core.runtime": the process-level things Lua
 * needs: where the install lives, shutdown and its hooks, exit code, small
 * file-system queries (stat, list, mkdir -p, realpath) and library versions.
 */

#include <curl/curl.h>
#include <histedit.h>
#include <libwebsockets.h>
#include <nettle/version.h>
#include <openssl/crypto.h>
#include <libpq-fe.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <luajit.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vx_lua.h"

static int push_errno(lua_State *L, const char *what, const char *path);

static int l_home(lua_State *L) {
    lua_pushstring(L, vx_rt(L)->home);
    return 1;
}

/* Write all of data to fd; 0 or -1 with errno set. */
static int write_all(int fd, const char *data, size_t n) {
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

/* append_sync(path, data): append and fdatasync before returning, so a
 * journal line that was acknowledged survives a crash or power loss. A
 * failed append (a full disk) is cut back off, so the file never keeps a
 * part of a line that a later append would run into. */
static int l_append_sync(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) goto fail;
    off_t before = lseek(fd, 0, SEEK_END);
    if (write_all(fd, data, n) != 0 || fdatasync(fd) != 0) {
        int saved = errno;
        if (before >= 0 && ftruncate(fd, before) != 0) { /* nothing more to do: the error below is the news */
        }
        close(fd);
        errno = saved;
        goto fail;
    }
    if (close(fd) != 0) goto fail;
    lua_pushboolean(L, 1);
    return 1;
fail:
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
}

/* fsync the directory holding path, so a rename in it survives a crash. */
static int sync_parent_dir(const char *path) {
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 1;
    if (n >= sizeof dir) return -1;
    if (slash) {
        memcpy(dir, path, n ? n : 1);
        dir[n ? n : 1] = '\0';
    } else {
        strcpy(dir, ".");
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* write_file(path, data): replace path with data so that a reader (or a
 * crash, or a full disk) sees either the old file or the new one, never a
 * part: a private temporary file next to it, written, fsynced and closed
 * with every result checked, renamed over path, then the directory
 * fsynced. true | nil, "path: reason". */
static int l_write_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: path too long", path);
        return 2;
    }
    const char *step = "cannot create a temporary file for";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) goto fail;
    step = "cannot write";
    if (write_all(fd, data, n) != 0) goto fail_fd;
    step = "cannot flush to disk";
    if (fsync(fd) != 0) goto fail_fd;
    step = "cannot close";
    if (close(fd) != 0) goto fail_tmp;
    step = "cannot rename the new version over";
    if (rename(tmp, path) != 0) goto fail_tmp;
    step = "cannot flush the directory of";
    if (sync_parent_dir(path) != 0) goto fail;
    lua_pushboolean(L, 1);
    return 1;
fail_fd: {
    int saved = errno;
    close(fd);
    errno = saved;
}
fail_tmp: {
    int saved = errno;
    unlink(tmp);
    errno = saved;
}
fail:
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: %s", step, path, strerror(errno));
    return 2;
}

/* lock_try(path): an exclusive advisory lock (flock) on path, created
 * 0600 if needed, without waiting: the descriptor that holds it | nil,
 * "busy" when another process holds it | nil, reason. The kernel releases
 * it when the process dies, so a killed holder never wedges the next. */
static int l_lock_try(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return push_errno(L, "cannot open lock file", path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int saved = errno;
        close(fd);
        if (saved == EWOULDBLOCK) {
            lua_pushnil(L);
            lua_pushliteral(L, "busy");
            return 2;
        }
        errno = saved;
        return push_errno(L, "cannot lock", path);
    }
    lua_pushinteger(L, fd);
    return 1;
}

static int l_unlock(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    if (fd >= 0) close(fd); /* closing drops the flock */
    return 0;
}

/* pid_alive(pid): whether a process with that pid exists. */
static int l_pid_alive(lua_State *L) {
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    lua_pushboolean(L, pid > 0 && (kill(pid, 0) == 0 || errno == EPERM));
    return 1;
}

static int l_uid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)getuid());
    return 1;
}

static int l_versions(lua_State *L) {
    lua_createtable(L, 0, 10);
    lua_pushliteral(L, VX_VERSION);
    lua_setfield(L, -2, "vibex");
    lua_pushliteral(L, LUAJIT_VERSION);
    lua_setfield(L, -2, "luajit");
    lua_pushstring(L, uv_version_string());
    lua_setfield(L, -2, "libuv");
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    lua_pushstring(L, cv ? cv->version : "?");
    lua_setfield(L, -2, "libcurl");
    int pq = PQlibVersion(); /* also keeps libpq linked for the FFI database layer */
    lua_pushfstring(L, "%d.%d", pq / 10000, pq % 10000);
    lua_setfield(L, -2, "libpq");
    lua_pushstring(L, lws_get_library_version());
    lua_setfield(L, -2, "libwebsockets");
    lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
    lua_setfield(L, -2, "openssl");
    lua_pushfstring(L, "%d.%d", nettle_version_major(), nettle_version_minor());
    lua_setfield(L, -2, "nettle");
    lua_pushfstring(L, "%d.%d", LIBEDIT_MAJOR, LIBEDIT_MINOR);
    lua_setfield(L, -2, "libedit");
    /* libsecp256k1 has no version call: the version it was built against */
    lua_pushliteral(L, VX_SECP256K1_VERSION);
    lua_setfield(L, -2, "libsecp256k1");
    return 1;
}

static int l_shutdown(lua_State *L) {
    vx_runtime_shutdown(vx_rt(L), luaL_optstring(L, 1, "requested"));
    return 0;
}

static int l_shutting_down(lua_State *L) {
    lua_pushboolean(L, vx_rt(L)->shutting_down);
    return 1;
}

/* on(event, fn): event is "shutdown" or "sigint". Returns fn for off(). */
static int l_on(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    const char *event = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (strcmp(event, "shutdown") && strcmp(event, "sigint"))
        return luaL_error(L, "runtime.on: unknown event '%s' (shutdown, sigint)", event);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->hooks_ref);
    lua_getfield(L, -1, event);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, event);
    }
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    lua_pushvalue(L, 2);
    return 1;
}

static int l_off(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    const char *event = luaL_checkstring(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->hooks_ref);
    lua_getfield(L, -1, event);
    if (!lua_istable(L, -1)) return 0;
    int n = (int)lua_objlen(L, -1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        int same = lua_rawequal(L, -1, 2);
        lua_pop(L, 1);
        if (!same) continue;
        for (int j = i; j < n; j++) {
            lua_rawgeti(L, -1, j + 1);
            lua_rawseti(L, -2, j);
        }
        lua_pushnil(L);
        lua_rawseti(L, -2, n);
        break;
    }
    return 0;
}

static int l_exit_code(lua_State *L) {
    vx_runtime *rt = vx_rt(L);
    if (!lua_isnoneornil(L, 1)) rt->exit_code = (int)luaL_checkinteger(L, 1);
    lua_pushinteger(L, rt->exit_code);
    return 1;
}

static int l_set_grace_ms(lua_State *L) {
    double ms = luaL_checknumber(L, 1);
    if (ms < 0) return luaL_error(L, "runtime.set_grace_ms: must be >= 0");
    vx_rt(L)->grace_ms = (uint64_t)ms;
    return 0;
}

static int l_set_stall_warn_ms(lua_State *L) {
    double ms = luaL_checknumber(L, 1);
    if (ms < 0) return luaL_error(L, "runtime.set_stall_warn_ms: must be >= 0 (0 disables)");
    vx_rt(L)->stall_warn_ms = (uint64_t)ms;
    return 0;
}

static int l_ptr(lua_State *L) {
    lua_pushlightuserdata(L, vx_rt(L));
    return 1;
}

static int l_wall_ms(lua_State *L) {
    lua_pushnumber(L, (double)vx_wall_ms());
    return 1;
}

static int push_errno(lua_State *L, const char *what, const char *path);

/* The process's resident memory now and at its peak, in bytes: current from
 * /proc/self/statm (resident pages), peak from getrusage (ru_maxrss, KiB).
 * nil, err when /proc is not there. */
static int l_memory(lua_State *L) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return push_errno(L, "open", "/proc/self/statm");
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (n != 2) {
        lua_pushnil(L);
        lua_pushliteral(L, "/proc/self/statm: unexpected contents");
        return 2;
    }
    struct rusage ru;
    double peak = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss * 1024.0 : 0;
    lua_pushnumber(L, (double)resident * (double)sysconf(_SC_PAGESIZE));
    lua_pushnumber(L, peak);
    return 2;
}

static int l_pid(lua_State *L) {
    lua_pushinteger(L, getpid());
    return 1;
}

static int push_errno(lua_State *L, const char *what, const char *path) {
    int e = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: %s", what, path, strerror(e));
    return 2;
}

static int l_stat(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) return push_errno(L, "cannot stat", path);
    lua_createtable(L, 0, 6);
    lua_pushnumber(L, (double)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushnumber(L, (double)st.st_mtim.tv_sec * 1000.0 + (double)st.st_mtim.tv_nsec / 1e6);
    lua_setfield(L, -2, "mtime_ms");
    lua_pushstring(L, S_ISDIR(st.st_mode) ? "directory" : S_ISREG(st.st_mode) ? "file" : "other");
    lua_setfield(L, -2, "type");
    lua_pushnumber(L, (double)st.st_ino);
    lua_setfield(L, -2, "inode");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777)); /* permission bits */
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    lua_setfield(L, -2, "uid");
    return 1;
}

static int l_listdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (!d) return push_errno(L, "cannot list", path);
    lua_newtable(L);
    int i = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++i);
    }
    closedir(d);
    return 1;
}

static int l_mkdir_p(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    char path[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) return luaL_error(L, "mkdir_p: bad path");
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) return push_errno(L, "cannot create", path);
        path[i] = c;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_realpath(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char out[PATH_MAX];
    if (!realpath(path, out)) return push_errno(L, "cannot resolve", path);
    lua_pushstring(L, out);
    return 1;
}

static int l_isatty(lua_State *L) {
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

int vx_open_runtime(lua_State *L) {
    static const luaL_Reg fns[] = {{"home", l_home},
                                   {"versions", l_versions},
                                   {"shutdown", l_shutdown},
                                   {"shutting_down", l_shutting_down},
                                   {"on", l_on},
                                   {"off", l_off},
                                   {"exit_code", l_exit_code},
                                   {"set_grace_ms", l_set_grace_ms},
                                   {"set_stall_warn_ms", l_set_stall_warn_ms},
                                   {"ptr", l_ptr},
                                   {"wall_ms", l_wall_ms},
                                   {"pid", l_pid},
                                   {"memory", l_memory},
                                   {"uid", l_uid},
                                   {"append_sync", l_append_sync},
                                   {"write_file", l_write_file},
                                   {"lock_try", l_lock_try},
                                   {"unlock", l_unlock},
                                   {"pid_alive", l_pid_alive},
                                   {"stat", l_stat},
                                   {"listdir", l_listdir},
                                   {"mkdir_p", l_mkdir_p},
                                   {"realpath", l_realpath},
                                   {"isatty", l_isatty},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
