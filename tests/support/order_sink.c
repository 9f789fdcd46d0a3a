/*
 * order_sink.c — the receiving end of the order-latency benches: a plain
 * HTTP/1.1 keep-alive server on 127.0.0.1 that notes CLOCK_MONOTONIC the
 * moment a request's first bytes can be read, answers at once with a canned
 * venue reply, and hands the stamps out on GET /_stamps.
 *
 * Each connection has a thread that waits for its socket in poll() (or
 * spins, see wait_readable), so the stamp includes the loopback delivery and
 * the thread's wake-up; the client's own moment of sending comes from curl
 * (vibex's http results carry sent_ns). It checks nothing: the bench measures
 * the client's cost from a decision to bytes on the wire; the fake venue
 * (tests/support/fake_aster) does the checking. Prints "LISTENING <port>".
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_STAMPS (1 << 20)

static uint64_t stamps[MAX_STAMPS];
static size_t nstamps;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static const char INFO[] =
    "{\"timezone\":\"UTC\",\"serverTime\":0,\"rateLimits\":[],\"symbols\":[{\"symbol\":\"BTCUSDT\",\"status\":"
    "\"TRADING\",\"filters\":[{\"filterType\":\"PRICE_FILTER\",\"minPrice\":\"1\",\"maxPrice\":\"1000000\","
    "\"tickSize\":\"0.1\"},{\"filterType\":\"LOT_SIZE\",\"minQty\":\"0.001\",\"maxQty\":\"1000\",\"stepSize\":"
    "\"0.001\"},{\"filterType\":\"MARKET_LOT_SIZE\",\"minQty\":\"0.001\",\"maxQty\":\"120\",\"stepSize\":\"0.001\"},"
    "{\"filterType\":\"MIN_NOTIONAL\",\"notional\":\"5\"},{\"filterType\":\"PERCENT_PRICE\",\"multiplierUp\":"
    "\"1.15\",\"multiplierDown\":\"0.85\"}]}]}";
static const char ORDER[] =
    "{\"orderId\":1,\"symbol\":\"BTCUSDT\",\"status\":\"NEW\",\"clientOrderId\":\"x\",\"price\":\"60000\","
    "\"origQty\":\"0.01\",\"executedQty\":\"0\",\"type\":\"LIMIT\",\"side\":\"BUY\"}";

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int reply(int fd, const char *body, size_t len) {
    char head[128];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", len);
    return send_all(fd, head, (size_t)n) || send_all(fd, body, len);
}

static int reply_stamps(int fd) {
    pthread_mutex_lock(&lock);
    size_t cap = nstamps * 22 + 3;
    char *out = malloc(cap);
    if (!out) {
        pthread_mutex_unlock(&lock);
        return -1;
    }
    size_t len = 0;
    out[len++] = '[';
    for (size_t i = 0; i < nstamps; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%llu", i ? "," : "", (unsigned long long)stamps[i]);
    out[len++] = ']';
    nstamps = 0;
    pthread_mutex_unlock(&lock);
    int rc = reply(fd, out, len);
    free(out);
    return rc;
}

/* Wait until fd is readable. With spin = 1 (ORDER_SINK_SPIN=1) the thread
 * polls without sleeping while requests keep coming, so the stamp is not
 * delayed by a wake-up; that costs a core, which on a small machine slows
 * the client it measures, so by default it sleeps in poll(). */
static int spin;

static void wait_readable(int fd) {
    if (spin) {
        uint64_t until = now_ns() + 1000000;
        char c;
        while (now_ns() < until) {
            if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) != -1 || (errno != EAGAIN && errno != EWOULDBLOCK)) return;
        }
    }
    struct pollfd p = {fd, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
}

/* One request in buf[0..len): handle it if complete; returns bytes used, 0 if incomplete, -1 on error. */
static long handle(int fd, char *buf, size_t len, uint64_t first) {
    char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - buf) + 4, body = 0;
    char *cl = strcasestr(buf, "\r\ncontent-length:");
    if (cl && cl < end) body = strtoul(cl + 17, NULL, 10);
    if (len < head + body) return 0;
    char path[256] = "";
    sscanf(buf, "%*s %255s", path);
    char *q = strchr(path, '?');
    if (q) *q = '\0';
    size_t plen = strlen(path);
    int rc;
    if (plen >= 6 && !strcmp(path + plen - 6, "/order")) {
        pthread_mutex_lock(&lock);
        if (nstamps < MAX_STAMPS) stamps[nstamps++] = first;
        pthread_mutex_unlock(&lock);
        rc = reply(fd, ORDER, sizeof ORDER - 1);
    } else if (plen >= 13 && !strcmp(path + plen - 13, "/exchangeInfo")) {
        rc = reply(fd, INFO, sizeof INFO - 1);
    } else if (!strcmp(path, "/_stamps")) {
        rc = reply_stamps(fd);
    } else {
        rc = reply(fd, "{}", 2);
    }
    return rc ? -1 : (long)(head + body);
}

static void *serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    uint64_t first = 0;
    while (buf) {
        wait_readable(fd);
        ssize_t n = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            break;
        }
        if (len == 0) first = now_ns();
        len += (size_t)n;
        buf[len] = '\0';
        long used = 0;
        while (len && (used = handle(fd, buf, len, first)) > 0) {
            memmove(buf, buf + used, len - (size_t)used);
            len -= (size_t)used;
            buf[len] = '\0';
            first = now_ns();
        }
        if (used < 0 || len == cap) break;
    }
    free(buf);
    close(fd);
    return NULL;
}

int main(void) {
    spin = getenv("ORDER_SINK_SPIN") != NULL;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64) ||
        getsockname(s, (struct sockaddr *)&a, &alen)) {
        perror("order_sink");
        return 1;
    }
    printf("LISTENING %d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) continue;
            perror("accept");
            return 1;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, serve, (void *)(intptr_t)c) != 0) {
            close(c);
            continue;
        }
        pthread_detach(t);
    }
}
