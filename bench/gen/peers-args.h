/*
 * peers-args.h: what peers.c and tun-peers.c share: their command line
 * (--socket PATH --count N --base IP --gw IP --port P --tag T [--duration S]
 * [--idle S]), a clock, and how they fail (a JSON error on stderr, exit 2).
 */
#pragma once
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <time.h>

struct peers_args {
  const char *sock;
  int count, port;
  uint32_t base, gw, tag;  /* addresses in host order */
  double duration, idle;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "{\"error\":\"%s: %s\"}\n", what, strerror(errno));
  exit(2);
}

/* The result line on stdout: datagrams counted, from the first to the last
 * (elapsed, pps), and how many peers got at least one. */
static void peers_report(uint64_t received, double first, double last, int peers_hit) {
  double el = last - first;
  printf("{\"received\":%llu,\"elapsed\":%.6f,\"pps\":%.1f,\"peers_hit\":%d}\n", (unsigned long long)received, el,
         el > 0 ? (double)received / el : 0.0, peers_hit);
}

/* Parses argv into a; on a bad or missing option prints the usage of prog
 * and returns 0. */
static int peers_args_parse(int argc, char **argv, const char *prog, int max_peers, struct peers_args *a) {
  const char *base_s = NULL, *gw_s = NULL;
  memset(a, 0, sizeof *a);
  a->duration = 10;
  a->idle = 0.5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--socket")) a->sock = v;
    else if (!strcmp(k, "--count")) a->count = atoi(v);
    else if (!strcmp(k, "--base")) base_s = v;
    else if (!strcmp(k, "--gw")) gw_s = v;
    else if (!strcmp(k, "--port")) a->port = atoi(v);
    else if (!strcmp(k, "--tag")) a->tag = (uint32_t)strtoul(v, NULL, 10);
    else if (!strcmp(k, "--duration")) a->duration = atof(v);
    else if (!strcmp(k, "--idle")) a->idle = atof(v);
    else { fprintf(stderr, "unknown option %s\n", k); return 0; }
  }
  struct in_addr b, g;
  if (!a->sock || !base_s || !gw_s || a->count < 1 || a->count > max_peers || a->port < 1 || a->port > 65535 ||
      inet_pton(AF_INET, base_s, &b) != 1 || inet_pton(AF_INET, gw_s, &g) != 1 || a->duration <= 0 || a->duration > 600) {
    fprintf(stderr, "usage: %s --socket PATH --count N --base IP --gw IP --port P --tag T [--duration S] [--idle S]\n", prog);
    return 0;
  }
  a->base = ntohl(b.s_addr);
  a->gw = ntohl(g.s_addr);
  return 1;
}

/* Room for fds_per_peer fds a peer (RLIMIT_NOFILE) and the router socket's
 * address in sa; 0 (after saying why) if either cannot be had. */
static int peers_prepare(const struct peers_args *a, int fds_per_peer, struct sockaddr_un *sa) {
  const rlim_t n = (rlim_t)a->count * (rlim_t)fds_per_peer + 64;
  struct rlimit rl = {n, n};
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) die("setrlimit");
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (strlen(a->sock) >= sizeof sa->sun_path) {
    fprintf(stderr, "socket path too long\n");
    return 0;
  }
  strcpy(sa->sun_path, a->sock);
  return 1;
}
