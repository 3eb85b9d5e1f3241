/*
 * autopod's pod init: a small static program that starts a pod, instead of
 * `nsenter --net=NS -- unshare ... -- autopod __pod-init PLAN` (three execs,
 * one of them the 110 MiB autopod binary). The agent runs it from a memfd
 * (src/platform/linux/native-pod-init.ts); build.ts compiles and embeds it.
 *
 * As the launcher: it enters the pod's net namespace (--netns) or makes it
 * with the veth pair to the host's bridge (--new-netns, as `ip netns add` and
 * `ip link add ... type veth` would), unshares pid, mount, uts and ipc
 * namespaces, forks the pod's pid 1, puts it in the cgroups named (--cgroup:
 * on v1 hosts all the pod's, a wait for an RCU grace period that pid 1's own
 * work overlaps; on v2 the agent's spawn started us in the pod's cgroup
 * already), and exits. It never waits for that child: the
 * child is handed to the agent (a child subreaper) with its exit status.
 *
 * As pid 1 it reports "autopod-pod-init: pid N" (its pid on the host) on a
 * close-on-exec copy of stderr, configures the pod's side of the network
 * (--net), builds the pod's root (overlay or bind of a copy, volumes, /proc,
 * /dev, /dev/pts, /tmp), pivots into it, opens the log as stdout and stderr,
 * enters the working directory, starts a session, drops the capabilities not
 * kept, waits until the launcher is gone (so it is in its cgroups, and the
 * agent's child), resets signals, becomes the user,
 * and execs the command with the launcher's own environment. The report copy
 * closes on exec (the agent then sees end of file), or says
 * "autopod-pod-init: error MESSAGE" and the process exits 127.
 *
 * Every path inside the pod's root is given already resolved by the agent;
 * here each is walked one component at a time from the root without
 * following any symlink, so nothing can be mounted outside the root.
 *
 * Usage (the agent's, never a person's):
 *   pod-init [--cgroup DIR]... (--netns PATH | --new-netns PATH HOST_VETH BRIDGE) [--net ADDR/PREFIX GATEWAY]
 *     --hostname NAME (--overlay MOUNTPOINT LOWER UPPER WORK | --copy MOUNTPOINT)
 *     [--volume HOST PODPATH ro|rw file|dir]... --proc PODPATH --dev PODPATH
 *     --tmp PODPATH --dev-node NAME... --keep-caps N,N,... --workdir DIR
 *     --log PODPATH [--user UID GID|- HOME_SET(0|1)] -- CMD [ARG...]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define REPORT_PID "autopod-pod-init: pid "
#define REPORT_ERROR "autopod-pod-init: error "
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_LIST 256

extern char **environ;

static int report_fd = 2;
static char step_name[512] = "start";

static void step(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(step_name, sizeof step_name, fmt, ap);
  va_end(ap);
}

/** Report "error STEP: MESSAGE" and end (the agent reads the line; the status says it failed too). */
static void fail(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char line[2048];
  int n = snprintf(line, sizeof line, "%s%s: %s\n", REPORT_ERROR, step_name, msg);
  if (n > (int)sizeof line - 1) n = sizeof line - 1;
  for (char *p = line; p < line + n - 1; p++)
    if (*p == '\n') *p = ' ';
  if (write(report_fd, line, n) < 0) {
    /* nobody listens any more; the exit status still says it failed */
  }
  _exit(127);
}

static void check(long r) {
  if (r < 0) fail("%s", strerror(errno));
}

struct volume {
  const char *host, *pod;
  int readonly, is_file;
};

struct plan {
  const char *cgroups[MAX_LIST];
  int ncgroups;
  const char *netns, *net_addr, *net_gateway, *hostname;
  int is_new_netns;
  const char *host_veth, *bridge; /* with is_new_netns */
  int is_overlay;
  const char *mountpoint, *lower, *upper, *work;
  struct volume volumes[MAX_LIST];
  int nvolumes;
  const char *proc, *dev, *tmp;
  const char *dev_nodes[MAX_LIST];
  int ndev_nodes;
  const char *keep_caps, *workdir, *log;
  int has_user, home_set;
  unsigned long uid;
  long gid; /* -1: from the pod's /etc/passwd */
  char **cmd;
};

static const char *need(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) fail("option \"%s\" lacks its value", argv[*i]);
  return argv[++*i];
}

static unsigned long number(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || !*s || *end || v > 4294967294UL) fail("invalid %s \"%s\"", what, s);
  return v;
}

static void parse(int argc, char **argv, struct plan *p) {
  memset(p, 0, sizeof *p);
  p->gid = -1;
  step("read the plan");
  int i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) break;
    if (!strcmp(a, "--cgroup")) {
      if (p->ncgroups == MAX_LIST) fail("too many cgroups");
      p->cgroups[p->ncgroups++] = need(argc, argv, &i);
    } else if (!strcmp(a, "--netns")) p->netns = need(argc, argv, &i);
    else if (!strcmp(a, "--new-netns")) {
      p->is_new_netns = 1;
      p->netns = need(argc, argv, &i);
      p->host_veth = need(argc, argv, &i);
      p->bridge = need(argc, argv, &i);
    }
    else if (!strcmp(a, "--net")) {
      p->net_addr = need(argc, argv, &i);
      p->net_gateway = need(argc, argv, &i);
    } else if (!strcmp(a, "--hostname")) p->hostname = need(argc, argv, &i);
    else if (!strcmp(a, "--overlay")) {
      p->is_overlay = 1;
      p->mountpoint = need(argc, argv, &i);
      p->lower = need(argc, argv, &i);
      p->upper = need(argc, argv, &i);
      p->work = need(argc, argv, &i);
    } else if (!strcmp(a, "--copy")) p->mountpoint = need(argc, argv, &i);
    else if (!strcmp(a, "--volume")) {
      if (p->nvolumes == MAX_LIST) fail("too many volumes");
      struct volume *v = &p->volumes[p->nvolumes++];
      v->host = need(argc, argv, &i);
      v->pod = need(argc, argv, &i);
      v->readonly = !strcmp(need(argc, argv, &i), "ro");
      v->is_file = !strcmp(need(argc, argv, &i), "file");
    } else if (!strcmp(a, "--proc")) p->proc = need(argc, argv, &i);
    else if (!strcmp(a, "--dev")) p->dev = need(argc, argv, &i);
    else if (!strcmp(a, "--tmp")) p->tmp = need(argc, argv, &i);
    else if (!strcmp(a, "--dev-node")) {
      if (p->ndev_nodes == MAX_LIST) fail("too many device nodes");
      const char *n = need(argc, argv, &i);
      if (!*n || strchr(n, '/') || !strcmp(n, ".") || !strcmp(n, "..")) fail("invalid device node \"%s\"", n);
      p->dev_nodes[p->ndev_nodes++] = n;
    } else if (!strcmp(a, "--keep-caps")) p->keep_caps = need(argc, argv, &i);
    else if (!strcmp(a, "--workdir")) p->workdir = need(argc, argv, &i);
    else if (!strcmp(a, "--log")) p->log = need(argc, argv, &i);
    else if (!strcmp(a, "--user")) {
      p->has_user = 1;
      p->uid = number(need(argc, argv, &i), "uid");
      const char *g = need(argc, argv, &i);
      p->gid = strcmp(g, "-") ? (long)number(g, "gid") : -1;
      p->home_set = !strcmp(need(argc, argv, &i), "1");
    } else fail("unknown option \"%s\"", a);
  }
  if (i + 1 >= argc) fail("no command after \"--\"");
  p->cmd = argv + i + 1;
  if (!p->netns || !p->hostname || !p->mountpoint || !p->proc || !p->dev || !p->tmp || !p->keep_caps || !p->workdir || !p->log)
    fail("the plan lacks a required option");
}

/* ---- the pod's side of the network, through rtnetlink ---- */

struct nlreq {
  struct nlmsghdr h;
  union {
    struct ifinfomsg link;
    struct ifaddrmsg addr;
    struct rtmsg route;
  } u;
  char attrs[64];
};

static void add_attr(struct nlreq *r, unsigned short type, const void *data, unsigned short len) {
  struct rtattr *a = (struct rtattr *)((char *)r + NLMSG_ALIGN(r->h.nlmsg_len));
  a->rta_type = type;
  a->rta_len = RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  r->h.nlmsg_len = NLMSG_ALIGN(r->h.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

static void talk(int fd, struct nlreq *r) {
  static unsigned seq;
  r->h.nlmsg_seq = ++seq;
  r->h.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  check(send(fd, r, r->h.nlmsg_len, 0));
  char buf[4096];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  check(n);
  struct nlmsghdr *h = (struct nlmsghdr *)buf;
  if (!NLMSG_OK(h, (size_t)n) || h->nlmsg_type != NLMSG_ERROR) fail("unexpected netlink answer");
  int err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
  if (err) fail("%s", strerror(-err));
}

static void link_up(int fd, int ifindex) {
  struct nlreq r = {0};
  r.h.nlmsg_len = NLMSG_LENGTH(sizeof r.u.link);
  r.h.nlmsg_type = RTM_NEWLINK;
  r.u.link.ifi_family = AF_UNSPEC;
  r.u.link.ifi_index = ifindex;
  r.u.link.ifi_flags = IFF_UP;
  r.u.link.ifi_change = IFF_UP;
  talk(fd, &r);
}

static void configure_network(const char *cidr, const char *gateway) {
  char addr_text[INET_ADDRSTRLEN];
  const char *slash = strchr(cidr, '/');
  struct in_addr addr, gw;
  if (!slash || slash - cidr >= (long)sizeof addr_text) fail("invalid address \"%s\"", cidr);
  memcpy(addr_text, cidr, slash - cidr);
  addr_text[slash - cidr] = 0;
  char *end;
  unsigned long prefix = strtoul(slash + 1, &end, 10);
  if (inet_pton(AF_INET, addr_text, &addr) != 1 || !slash[1] || *end || prefix > 32) fail("invalid address \"%s\"", cidr);
  if (inet_pton(AF_INET, gateway, &gw) != 1) fail("invalid gateway \"%s\"", gateway);

  step("configure the pod's network");
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  check(fd);
  int eth0 = if_nametoindex("eth0");
  if (!eth0) fail("no eth0 in the pod's net namespace: %s", strerror(errno));
  int lo = if_nametoindex("lo");
  if (!lo) fail("no lo in the pod's net namespace: %s", strerror(errno));
  link_up(fd, lo);

  struct nlreq r = {0};
  r.h.nlmsg_len = NLMSG_LENGTH(sizeof r.u.addr);
  r.h.nlmsg_type = RTM_NEWADDR;
  r.h.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  r.u.addr.ifa_family = AF_INET;
  r.u.addr.ifa_prefixlen = prefix;
  r.u.addr.ifa_scope = RT_SCOPE_UNIVERSE;
  r.u.addr.ifa_index = eth0;
  add_attr(&r, IFA_LOCAL, &addr, sizeof addr);
  add_attr(&r, IFA_ADDRESS, &addr, sizeof addr);
  talk(fd, &r);
  link_up(fd, eth0);

  /* The default route via the gateway on eth0, "onlink" (a routed pod's /32 has no subnet holding it). */
  memset(&r, 0, sizeof r);
  r.h.nlmsg_len = NLMSG_LENGTH(sizeof r.u.route);
  r.h.nlmsg_type = RTM_NEWROUTE;
  r.h.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  r.u.route.rtm_family = AF_INET;
  r.u.route.rtm_table = RT_TABLE_MAIN;
  r.u.route.rtm_protocol = RTPROT_BOOT;
  r.u.route.rtm_scope = RT_SCOPE_UNIVERSE;
  r.u.route.rtm_type = RTN_UNICAST;
  r.u.route.rtm_flags = RTNH_F_ONLINK;
  add_attr(&r, RTA_GATEWAY, &gw, sizeof gw);
  add_attr(&r, RTA_OIF, &eth0, sizeof eth0);
  talk(fd, &r);
  close(fd);
}

/* ---- the pod's net namespace and its veth pair, as `ip netns add` and `ip link add ... type veth` make them ---- */

struct nlbuf {
  struct nlmsghdr h;
  struct ifinfomsg link;
  char attrs[512];
};

static struct rtattr *put_attr(struct nlbuf *b, unsigned short type, const void *data, unsigned short len) {
  if (NLMSG_ALIGN(b->h.nlmsg_len) + RTA_SPACE(len) > sizeof *b) fail("netlink message too long");
  struct rtattr *a = (struct rtattr *)((char *)b + NLMSG_ALIGN(b->h.nlmsg_len));
  a->rta_type = type;
  a->rta_len = RTA_LENGTH(len);
  if (len) memcpy(RTA_DATA(a), data, len);
  b->h.nlmsg_len = NLMSG_ALIGN(b->h.nlmsg_len) + RTA_ALIGN(a->rta_len);
  return a;
}

static void end_nest(struct nlbuf *b, struct rtattr *nest) {
  nest->rta_len = (unsigned short)((char *)b + b->h.nlmsg_len - (char *)nest);
}

/** The veth pair: HOST_VETH in our (the host's) namespace, up, on BRIDGE; its peer eth0 in the pod's (pod_ns fd). */
static void create_veth(int fd, const char *host_veth, int bridge, int pod_ns) {
  struct nlbuf b;
  memset(&b, 0, sizeof b);
  b.h.nlmsg_len = NLMSG_LENGTH(sizeof b.link);
  b.h.nlmsg_type = RTM_NEWLINK;
  b.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  b.h.nlmsg_seq = 1;
  b.link.ifi_family = AF_UNSPEC;
  b.link.ifi_flags = IFF_UP;
  b.link.ifi_change = IFF_UP;
  put_attr(&b, IFLA_IFNAME, host_veth, strlen(host_veth) + 1);
  unsigned master = (unsigned)bridge;
  put_attr(&b, IFLA_MASTER, &master, sizeof master);
  struct rtattr *info = put_attr(&b, IFLA_LINKINFO, NULL, 0);
  put_attr(&b, IFLA_INFO_KIND, "veth", 4);
  struct rtattr *data = put_attr(&b, IFLA_INFO_DATA, NULL, 0);
  struct rtattr *peer = put_attr(&b, VETH_INFO_PEER, NULL, 0);
  struct ifinfomsg peer_link = {.ifi_family = AF_UNSPEC};
  if (NLMSG_ALIGN(b.h.nlmsg_len) + sizeof peer_link > sizeof b) fail("netlink message too long");
  memcpy((char *)&b + b.h.nlmsg_len, &peer_link, sizeof peer_link);
  b.h.nlmsg_len += sizeof peer_link;
  put_attr(&b, IFLA_IFNAME, "eth0", 5);
  unsigned ns = (unsigned)pod_ns;
  put_attr(&b, IFLA_NET_NS_FD, &ns, sizeof ns);
  end_nest(&b, peer);
  end_nest(&b, data);
  end_nest(&b, info);
  check(send(fd, &b, b.h.nlmsg_len, 0));
  char answer[4096];
  ssize_t n = recv(fd, answer, sizeof answer, 0);
  check(n);
  struct nlmsghdr *h = (struct nlmsghdr *)answer;
  if (!NLMSG_OK(h, (size_t)n) || h->nlmsg_type != NLMSG_ERROR) fail("unexpected netlink answer");
  int err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
  if (err) fail("%s", strerror(-err));
}

/**
 * Make the pod's net namespace, named PATH (under /run/netns, shared as `ip netns add` shares it, so
 * every mount namespace sees it), and enter it; then the veth pair between it and the host's bridge.
 * On failure here the agent removes what was made (its teardown deletes the namespace and the veth).
 */
static void make_netns(const struct plan *p) {
  step("find bridge \"%s\"", p->bridge);
  int bridge = if_nametoindex(p->bridge);
  if (!bridge) fail("%s", strerror(errno));
  step("create net namespace \"%s\"", p->netns);
  char dir[PATH_MAX];
  const char *slash = strrchr(p->netns, '/');
  if (!slash || slash == p->netns || (size_t)(slash - p->netns) >= sizeof dir) fail("invalid net namespace path");
  memcpy(dir, p->netns, slash - p->netns);
  dir[slash - p->netns] = 0;
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) fail("%s", strerror(errno));
  int made_mount = 0;
  while (mount("", dir, "none", MS_SHARED | MS_REC, NULL) < 0) {
    if (errno != EINVAL || made_mount) fail("%s", strerror(errno));
    check(mount(dir, dir, "none", MS_BIND | MS_REC, NULL));
    made_mount = 1;
  }
  /* The netlink socket is the host's: opened before we leave its namespace. */
  int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  check(nl);
  int file = open(p->netns, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  check(file);
  close(file);
  if (unshare(CLONE_NEWNET) < 0 || mount("/proc/self/ns/net", p->netns, "none", MS_BIND, NULL) < 0) {
    int e = errno;
    unlink(p->netns);
    fail("%s", strerror(e));
  }
  step("create the veth pair \"%s\"", p->host_veth);
  int ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  check(ns);
  create_veth(nl, p->host_veth, bridge, ns);
  close(ns);
  close(nl);
}

/** The cgroup.procs files of the cgroups named, opened while we still see the host's mounts (pid 1 pivots away from them). */
static void open_cgroups(const struct plan *p, int *fds) {
  for (int i = 0; i < p->ncgroups; i++) {
    step("open cgroup \"%s\"", p->cgroups[i]);
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/cgroup.procs", p->cgroups[i]) >= (int)sizeof path) fail("path too long");
    fds[i] = open(path, O_WRONLY | O_CLOEXEC);
    check(fds[i]);
  }
}

/**
 * Put the pod's pid 1 (host pid `pod`, not yet past its wait for us) in each cgroup. A v1 join
 * waits for an RCU grace period: pid 1 builds its network and root meanwhile, and runs its command
 * only once we are gone. On failure pid 1 is killed first, so nothing runs outside its cgroups.
 */
static void join_cgroups(const struct plan *p, const int *fds, pid_t pod) {
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)pod);
  for (int i = 0; i < p->ncgroups; i++) {
    step("join cgroup \"%s\"", p->cgroups[i]);
    if (write(fds[i], pid, n) != n) {
      int e = errno;
      kill(pod, SIGKILL);
      fail("%s", strerror(e));
    }
    close(fds[i]);
  }
}

/* ---- paths in the pod's root ---- */

/**
 * An O_PATH fd of PODPATH under the directory ROOT, walked one component at a
 * time without following symlinks (the agent resolved them), each missing
 * directory made (and, with is_file, the last component made an empty file).
 */
static int open_in_root(const char *root, const char *podpath, int is_file) {
  char copy[PATH_MAX];
  if (strlen(podpath) >= sizeof copy) fail("path too long");
  strcpy(copy, podpath);
  int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  check(fd);
  char *save = NULL;
  char *next = strtok_r(copy, "/", &save);
  while (next) {
    char *part = next;
    next = strtok_r(NULL, "/", &save);
    if (!strcmp(part, ".")) continue;
    if (!strcmp(part, "..")) fail("\"%s\" leaves the pod's root", podpath);
    int last = next == NULL;
    int sub;
    if (last && is_file) {
      sub = openat(fd, part, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0 && errno == ENOENT) {
        int made = openat(fd, part, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        check(made);
        close(made);
        sub = openat(fd, part, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      }
      check(sub);
      struct stat st;
      check(fstat(sub, &st));
      if (S_ISLNK(st.st_mode)) fail("\"%s\" is a symlink in the pod's root", podpath);
    } else {
      sub = openat(fd, part, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
      if (sub < 0 && errno == ENOENT) {
        if (mkdirat(fd, part, 0755) < 0 && errno != EEXIST) fail("%s", strerror(errno));
        sub = openat(fd, part, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
      }
      if (sub < 0 && (errno == ENOTDIR || errno == ELOOP)) fail("\"%s\" is not a directory in the pod's root", podpath);
      check(sub);
    }
    close(fd);
    fd = sub;
  }
  return fd;
}

/** Mount onto PODPATH under ROOT (walked as open_in_root does); the fd is closed after. */
static void mount_at(const char *root, const char *podpath, int is_file, const char *source, const char *fstype, unsigned long flags,
                     const char *data) {
  int fd = open_in_root(root, podpath, is_file);
  char at[64];
  snprintf(at, sizeof at, "/proc/self/fd/%d", fd);
  check(mount(source, at, fstype, flags, data));
  close(fd);
}

static void build_root(const struct plan *p) {
  const char *root = p->mountpoint;
  step("set the hostname");
  check(sethostname(p->hostname, strlen(p->hostname)));
  step("make mounts private");
  check(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
  if (p->is_overlay) {
    step("mount the root overlay");
    char data[4096];
    if (snprintf(data, sizeof data, "lowerdir=%s,upperdir=%s,workdir=%s", p->lower, p->upper, p->work) >= (int)sizeof data)
      fail("paths too long");
    check(mount("overlay", root, "overlay", 0, data));
  } else {
    step("bind the root copy");
    check(mount(root, root, NULL, MS_BIND | MS_REC, NULL));
  }
  for (int i = 0; i < p->nvolumes; i++) {
    const struct volume *v = &p->volumes[i];
    step("bind volume \"%s\" at \"%s\"", v->host, v->pod);
    mount_at(root, v->pod, v->is_file, v->host, NULL, MS_BIND | MS_REC, NULL);
    if (v->readonly) mount_at(root, v->pod, v->is_file, NULL, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
  }
  step("mount /proc");
  mount_at(root, p->proc, 0, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  step("mount /dev");
  mount_at(root, p->dev, 0, "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=1024k");
  int dev = open_in_root(root, p->dev, 0); /* now the tmpfs */
  char devpath[64];
  snprintf(devpath, sizeof devpath, "/proc/self/fd/%d", dev);
  for (int i = 0; i < p->ndev_nodes; i++) {
    const char *n = p->dev_nodes[i];
    step("bind /dev/%s", n);
    int made = openat(dev, n, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    check(made);
    close(made);
    char from[64], to[128];
    snprintf(from, sizeof from, "/dev/%s", n);
    snprintf(to, sizeof to, "%s/%s", devpath, n);
    check(mount(from, to, NULL, MS_BIND, NULL));
  }
  step("mount /dev/pts");
  check(mkdirat(dev, "pts", 0755));
  char pts[128];
  snprintf(pts, sizeof pts, "%s/pts", devpath);
  check(mount("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"));
  step("populate /dev");
  check(mkdirat(dev, "shm", 01777));
  check(fchmodat(dev, "shm", 01777, 0));
  check(symlinkat("pts/ptmx", dev, "ptmx"));
  check(symlinkat("/proc/self/fd", dev, "fd"));
  check(symlinkat("/proc/self/fd/0", dev, "stdin"));
  check(symlinkat("/proc/self/fd/1", dev, "stdout"));
  check(symlinkat("/proc/self/fd/2", dev, "stderr"));
  close(dev);
  step("mount /tmp");
  mount_at(root, p->tmp, 0, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  step("pivot into the pod's root");
  /* pivot_root(".", ".") stacks the old root on the new one; detaching it leaves the pod nothing of the host's tree. */
  check(chdir(root));
  check(syscall(SYS_pivot_root, ".", "."));
  check(umount2(".", MNT_DETACH));
  check(chdir("/"));
}

/* ---- the command ---- */

static void mkdir_p(const char *path, mode_t mode) {
  char buf[PATH_MAX];
  if (strlen(path) >= sizeof buf) fail("path too long");
  strcpy(buf, path);
  for (char *s = buf + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(buf, mode) < 0 && errno != EEXIST) fail("%s", strerror(errno));
    *s = '/';
  }
  if (mkdir(buf, mode) < 0 && errno != EEXIST) fail("%s", strerror(errno));
}

static void open_log(const char *log) {
  step("open the pod's log");
  char dir[PATH_MAX];
  if (strlen(log) >= sizeof dir) fail("path too long");
  strcpy(dir, log);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = 0;
    mkdir_p(dir, 0755);
  }
  int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  check(fd);
  int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
  check(nul);
  check(dup2(nul, 0));
  check(dup2(fd, 1));
  check(dup2(fd, 2));
  close(nul);
  close(fd);
}

static void drop_capabilities(const char *keep) {
  step("drop capabilities");
  unsigned long long kept = 0;
  for (const char *s = keep; *s;) {
    char *end;
    unsigned long c = strtoul(s, &end, 10);
    if (end == s || c > 63) fail("invalid capability list \"%s\"", keep);
    kept |= 1ULL << c;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') fail("invalid capability list \"%s\"", keep);
  }
  int last = 40;
  FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
  if (f) {
    if (fscanf(f, "%d", &last) != 1) last = 40;
    fclose(f);
  }
  for (int cap = 0; cap <= last; cap++)
    if (!(kept & (1ULL << cap))) check(prctl(PR_CAPBSET_DROP, cap, 0, 0, 0));
}

/**
 * Until the launcher (our parent on the host, `pidfd`) is gone: it puts us in our cgroups meanwhile.
 * No deadline here: the agent's own (launch timeout) kills us both.
 */
static void wait_launcher_gone(int pidfd) {
  if (pidfd < 0) return;
  struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
  while (poll(&pfd, 1, -1) < 0 && errno == EINTR) {
  }
  close(pidfd);
}

static void reset_signals(void) {
  struct sigaction dfl = {0};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

/** A whole small file of the pod (its /etc/passwd, /etc/group) into a new buffer; "" when it cannot be read. */
static char *slurp(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap + 1);
  if (!buf) fail("out of memory");
  if (fd >= 0) {
    for (;;) {
      if (len == cap) {
        cap *= 2;
        buf = realloc(buf, cap + 1);
        if (!buf) fail("out of memory");
      }
      ssize_t n = read(fd, buf + len, cap - len);
      if (n <= 0) break;
      len += n;
    }
    close(fd);
  }
  buf[len] = 0;
  return buf;
}

static int all_digits(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return 0;
  return 1;
}

/** Split a line at ':' into at most `max` fields; how many. */
static int fields(char *line, char **out, int max) {
  int n = 0;
  out[n++] = line;
  for (char *s = line; *s && n < max; s++)
    if (*s == ':') {
      *s = 0;
      out[n++] = s + 1;
    }
  return n;
}

/** As src/platform/linux/passwd.ts accountOf: group, supplementary groups and home of uid from the pod's files. */
static void become_user(const struct plan *p, char ***env) {
  char *passwd = slurp("/etc/passwd");
  char *name = NULL, *home = "/";
  long pw_gid = -1;
  for (char *line = strtok(passwd, "\n"); line; line = strtok(NULL, "\n")) {
    char *f[8];
    if (fields(line, f, 8) < 7 || !all_digits(f[2]) || !all_digits(f[3])) continue;
    if (strtoul(f[2], NULL, 10) == p->uid) {
      name = f[0];
      pw_gid = (long)strtoul(f[3], NULL, 10);
      home = *f[5] ? f[5] : "/";
      break;
    }
  }
  gid_t primary = p->gid >= 0 ? (gid_t)p->gid : pw_gid >= 0 ? (gid_t)pw_gid : 0;
  gid_t groups[NGROUPS_MAX > 1024 ? 1024 : NGROUPS_MAX];
  int ngroups = 0;
  groups[ngroups++] = primary;
  if (name) {
    char *group = slurp("/etc/group");
    char *save_line;
    for (char *line = strtok_r(group, "\n", &save_line); line; line = strtok_r(NULL, "\n", &save_line)) {
      char *f[5];
      if (fields(line, f, 5) < 4 || !all_digits(f[2])) continue;
      char *save_member;
      for (char *m = strtok_r(f[3], ",", &save_member); m; m = strtok_r(NULL, ",", &save_member)) {
        if (strcmp(m, name)) continue;
        gid_t g = (gid_t)strtoul(f[2], NULL, 10);
        int seen = 0;
        for (int k = 0; k < ngroups; k++) seen |= groups[k] == g;
        if (!seen && ngroups < (int)(sizeof groups / sizeof groups[0])) groups[ngroups++] = g;
        break;
      }
    }
  }
  if (!p->home_set) {
    int n = 0;
    while ((*env)[n]) n++;
    char **out = calloc(n + 2, sizeof *out);
    if (!out) fail("out of memory");
    int k = 0;
    for (int i = 0; i < n; i++)
      if (strncmp((*env)[i], "HOME=", 5)) out[k++] = (*env)[i];
    size_t len = strlen(home) + 6;
    out[k] = malloc(len);
    if (!out[k]) fail("out of memory");
    snprintf(out[k++], len, "HOME=%s", home);
    *env = out;
  }
  step("become uid %lu gid %u", p->uid, (unsigned)primary);
  check(syscall(SYS_setgroups, ngroups, groups));
  check(syscall(SYS_setresgid, primary, primary, primary));
  check(syscall(SYS_setresuid, p->uid, p->uid, p->uid));
}

static const char *find_command(const char *cmd, char **env) {
  if (strchr(cmd, '/')) return cmd;
  const char *path = DEFAULT_PATH;
  for (char **e = env; *e; e++)
    if (!strncmp(*e, "PATH=", 5)) path = *e + 5;
  step("find \"%s\"", cmd);
  static char full[PATH_MAX];
  const char *s = path;
  for (;;) {
    const char *colon = strchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : strlen(s);
    struct stat st;
    if (snprintf(full, sizeof full, "%.*s/%s", (int)(len ? len : 1), len ? s : ".", cmd) < (int)sizeof full && stat(full, &st) == 0)
      return full;
    if (!colon) break;
    s = colon + 1;
  }
  fail("\"%s\" is not on PATH (%s)", cmd, path);
  return NULL;
}

static void pod_init(const struct plan *p, int launcher) {
  step("report the pid");
  char self[32] = {0};
  check(readlink("/proc/self", self, sizeof self - 1)); /* still the host's /proc: the host pid */
  char line[64];
  int n = snprintf(line, sizeof line, "%s%s\n", REPORT_PID, self);
  check(write(report_fd, line, n));
  if (p->net_addr) configure_network(p->net_addr, p->net_gateway);
  build_root(p);
  open_log(p->log);
  step("enter the working directory \"%s\"", p->workdir);
  if (access(p->workdir, F_OK) < 0) mkdir_p(p->workdir, 0755);
  check(chdir(p->workdir));
  step("start a session");
  check(setsid());
  drop_capabilities(p->keep_caps);
  /* The command starts only once the launcher is gone, so the pod's pid 1 is the agent's child from its first instruction on. */
  wait_launcher_gone(launcher);
  reset_signals();
  step("close inherited files");
  check(syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */));
  char **env = environ;
  if (p->has_user) become_user(p, &env);
  const char *path = find_command(p->cmd[0], env);
  step("exec \"%s\"", path);
  execve(path, p->cmd, env);
  fail("%s", strerror(errno));
}

int main(int argc, char **argv) {
  report_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (report_fd < 0) return 127;
  struct plan p;
  parse(argc, argv, &p);
  if (p.is_new_netns) {
    make_netns(&p);
  } else {
    step("enter the net namespace \"%s\"", p.netns);
    int ns = open(p.netns, O_RDONLY | O_CLOEXEC);
    check(ns);
    check(setns(ns, CLONE_NEWNET));
    close(ns);
  }
  int cgroups[MAX_LIST];
  open_cgroups(&p, cgroups);
  /* Inherited by pid 1, which polls it to know when we are gone. */
  int launcher = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (launcher < 0 && p.ncgroups) fail("pidfd_open: %s", strerror(errno)); /* pid 1 could not wait for its cgroups */
  step("make the pod's namespaces");
  check(unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC));
  check(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
  step("start the pod's first process");
  pid_t child = fork();
  check(child);
  if (child > 0) {
    join_cgroups(&p, cgroups, child);
    _exit(0); /* never waits: pid 1 passes to the agent, its exit status with it */
  }
  pod_init(&p, launcher);
  return 127;
}
