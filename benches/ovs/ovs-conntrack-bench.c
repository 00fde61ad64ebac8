/* The workloads of `ctrack bench many-flows` and `memory`, run through Open vSwitch's
 * userspace connection tracker (lib/conntrack.c), so that the two are measured on the same
 * machine in one run. Built by run.sh against the libopenvswitch of Debian's
 * openvswitch-source package; OVS's own `ovstest test-conntrack benchmark` covers the one
 * hot flow.
 *
 *   ovs-conntrack-bench many-flows N LOOKUPS   insert N UDP flows, then look them up
 *   ovs-conntrack-bench tcp N                  N TCP connections through the handshake
 *
 * Each figure is printed as one JSON object a line, with the keys `ctrack bench --json`
 * prints. The flows are ctrack's (workload::udp_flows): 10.1.x.x to 10.200.0.1, source
 * port 1024 + (i & 0xff), destination port 53 + i % 7, byte for byte the datagrams ctrack
 * times (identification 1, DF, TTL 64, both checksums filled in). OVS takes packets in batches (of 32,
 * as its benchmark); every packet is committed, as its benchmark does. Bytes per connection
 * are what the allocator holds after the inserts less what it held before, over N. */

#include <config.h>

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conntrack.h"
#include "conntrack-private.h"
#include "dp-packet.h"
#include "flow.h"
#include "packets.h"
#include "timeval.h"

#define BATCH 32

static double
seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static size_t
allocated(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

static uint16_t
fold(uint32_t sum)
{
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return ~sum & 0xffff;
}

static uint32_t
add_bytes(uint32_t sum, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2) {
        sum += (b[i] << 8) | b[i + 1];
    }
    if (n & 1) {
        sum += b[n - 1] << 8;
    }
    return sum;
}

/* An Ethernet/IPv4 frame with the transport header `l4` (its checksum field at `csum_at`),
 * the IPv4 checksum and the transport checksum filled in. */
static struct dp_packet *
frame(uint8_t proto, const uint8_t src[4], const uint8_t dst[4], uint8_t *l4, size_t l4_len,
      size_t csum_at)
{
    uint8_t b[14 + 20 + 64];
    static const uint8_t eth[14] = {0x50, 0x54, 0, 0, 0, 0x0a, 0x50, 0x54, 0, 0, 0, 0x09,
                                    0x08, 0x00};
    memcpy(b, eth, 14);
    uint8_t *ip = b + 14;
    size_t total = 20 + l4_len;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    ip[2] = total >> 8;
    ip[3] = total & 0xff;
    ip[5] = 1;
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    memcpy(ip + 12, src, 4);
    memcpy(ip + 16, dst, 4);
    uint16_t c = fold(add_bytes(0, ip, 20));
    ip[10] = c >> 8;
    ip[11] = c & 0xff;
    uint32_t sum = add_bytes(0, ip + 12, 8) + proto + l4_len;
    c = fold(add_bytes(sum, l4, l4_len));
    l4[csum_at] = c >> 8;
    l4[csum_at + 1] = c & 0xff;
    memcpy(ip + 20, l4, l4_len);

    struct dp_packet *p = dp_packet_new(14 + total);
    dp_packet_put(p, b, 14 + total);
    struct flow flow;
    flow_extract(p, &flow);
    return p;
}

static struct dp_packet *
udp_flow(size_t i)
{
    uint8_t src[4] = {10, 1, (i >> 16) & 0xff, (i >> 8) & 0xff};
    uint8_t dst[4] = {10, 200, 0, 1};
    uint16_t sport = 1024 + (i & 0xff), dport = 53 + i % 7;
    uint8_t udp[8] = {sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, 0, 8, 0, 0};
    return frame(17, src, dst, udp, sizeof udp, 6);
}

static struct dp_packet *
tcp_segment(size_t i, bool reply, uint8_t flags, uint32_t seq, uint32_t ack)
{
    uint8_t client[4] = {10, 1, (i >> 16) & 0xff, (i >> 8) & 0xff};
    uint8_t server[4] = {10, 200, 0, 1};
    uint16_t cport = 1024 + (i & 0xff), sport = 80 + i % 7;
    uint16_t from = reply ? sport : cport, to = reply ? cport : sport;
    uint8_t tcp[20] = {from >> 8, from & 0xff, to >> 8, to & 0xff,
                       seq >> 24, (seq >> 16) & 0xff, (seq >> 8) & 0xff, seq & 0xff,
                       ack >> 24, (ack >> 16) & 0xff, (ack >> 8) & 0xff, ack & 0xff,
                       0x50, flags, 0xff, 0xff, 0, 0, 0, 0};
    return reply ? frame(6, server, client, tcp, sizeof tcp, 16)
                 : frame(6, client, server, tcp, sizeof tcp, 16);
}

static void
execute(struct conntrack *ct, struct dp_packet **pkts, const uint32_t *order, size_t n,
        long long now)
{
    for (size_t at = 0; at < n; at += BATCH) {
        struct dp_packet_batch batch;
        dp_packet_batch_init(&batch);
        for (size_t j = at; j < n && j < at + BATCH; j++) {
            dp_packet_batch_add(&batch, pkts[order ? order[j] : j]);
        }
        conntrack_execute(ct, &batch, htons(ETH_TYPE_IP), false, true, 0, NULL, NULL, 0, 0,
                          NULL, NULL, now, 0);
        struct dp_packet *p;
        DP_PACKET_BATCH_FOR_EACH (k, p, &batch) {
            pkt_metadata_init_conn(&p->md);
        }
    }
}

/* How many connections the table holds, so that a run that tracked nothing fails. */
static void
expect_connections(struct conntrack *ct, size_t n)
{
    size_t have = atomic_count_get(&ct->n_conn);
    if (have != n) {
        fprintf(stderr, "expected %zu connections in the table, it holds %zu\n", n, have);
        exit(1);
    }
}

static void
print(const char *workload, size_t packets, double secs, double bytes)
{
    printf("{\"workload\":\"%s\",\"threads\":1,\"packets\":%zu,\"mpps\":%.3f,"
           "\"ns_per_packet\":%.1f,\"bytes_per_conn\":",
           workload, packets, packets / secs / 1e6, secs * 1e9 / packets);
    if (bytes >= 0) {
        printf("%.0f}\n", bytes);
    } else {
        printf("null}\n");
    }
    fflush(stdout);
}

/* The same permutation as ctrack's workload::shuffled (xorshift), for the same order. */
static uint32_t *
shuffled(size_t n, uint64_t seed)
{
    uint32_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        v[i] = i;
    }
    uint64_t x = seed | 1;
    for (size_t i = n; i-- > 1;) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t j = x % (i + 1);
        uint32_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    return v;
}

static void
many_flows(size_t n, size_t lookups)
{
    struct dp_packet **pkts = malloc(n * sizeof *pkts);
    for (size_t i = 0; i < n; i++) {
        pkts[i] = udp_flow(i);
    }
    uint32_t *random = shuffled(n, 7);
    struct conntrack *ct = conntrack_init();
    conntrack_set_maxconns(ct, n + 1024);
    /* OVS's own clock, as its benchmark takes it: its cleanup thread expires by it. */
    long long now = time_msec();
    char name[64];

    size_t before = allocated();
    double t = seconds();
    execute(ct, pkts, NULL, n, now);
    t = seconds() - t;
    double bytes = ((double) allocated() - before) / n;
    expect_connections(ct, n);
    snprintf(name, sizeof name, "many-flows-insert %zu", n);
    print(name, n, t, bytes);

    for (int r = 0; r < 2; r++) {
        size_t done = 0;
        t = seconds();
        while (done < lookups) {
            execute(ct, pkts, r ? random : NULL, n, now + 1);
            done += n;
        }
        t = seconds() - t;
        snprintf(name, sizeof name, "many-flows %zu %s", n, r ? "random" : "sequential");
        print(name, done, t, bytes);
    }
    conntrack_destroy(ct);
}

static void
tcp(size_t n)
{
    struct dp_packet **syn = malloc(n * sizeof *syn);
    struct dp_packet **synack = malloc(n * sizeof *synack);
    struct dp_packet **ack = malloc(n * sizeof *ack);
    for (size_t i = 0; i < n; i++) {
        syn[i] = tcp_segment(i, false, 0x02, 1000, 0);
        synack[i] = tcp_segment(i, true, 0x12, 5000, 1001);
        ack[i] = tcp_segment(i, false, 0x10, 1001, 5001);
    }
    struct conntrack *ct = conntrack_init();
    conntrack_set_maxconns(ct, n + 1024);
    long long now = time_msec();
    size_t before = allocated();
    double t = seconds();
    execute(ct, syn, NULL, n, now);
    execute(ct, synack, NULL, n, now);
    execute(ct, ack, NULL, n, now);
    t = seconds() - t;
    expect_connections(ct, n);
    char name[64];
    snprintf(name, sizeof name, "tcp-handshakes %zu", n);
    print(name, 3 * n, t, ((double) allocated() - before) / n);
    conntrack_destroy(ct);
}

int
main(int argc, char *argv[])
{
    if (argc == 4 && !strcmp(argv[1], "many-flows")) {
        many_flows(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
    } else if (argc == 3 && !strcmp(argv[1], "tcp")) {
        tcp(strtoul(argv[2], NULL, 0));
    } else {
        fprintf(stderr, "usage: %s many-flows N LOOKUPS | tcp N\n", argv[0]);
        return 2;
    }
    return 0;
}
