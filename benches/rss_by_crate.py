#!/usr/bin/env python3
"""Which crates the resident pages of a process's own binary belong to: /proc/PID/maps + pagemap + nm.

   python3 benches/rss_by_crate.py PID BINARY      (as the process's owner: only pagemap's present bit is
   read, which needs no privilege). A page is counted for the crate with the most symbols on it, so
   generic code inlined from `core` shows as `core`. Needs an unstripped binary (the release profile).
"""
import sys, os, struct, subprocess, re, collections, bisect
pid = int(sys.argv[1]); binary = os.path.realpath(sys.argv[2])
PAGE = os.sysconf('SC_PAGE_SIZE')
maps = []
for line in open(f'/proc/{pid}/maps'):
    parts = line.split()
    if len(parts) >= 6 and os.path.realpath(parts[5]) == binary:
        lo, hi = (int(x, 16) for x in parts[0].split('-'))
        maps.append((lo, hi, parts[1], int(parts[2], 16)))
base = min(m[0] - m[3] for m in maps)  # load bias, assuming vaddr == offset for the first segment
# symbols
syms = []
out = subprocess.run(['nm', '-C', '-n', '--defined-only', binary], capture_output=True, text=True).stdout
for l in out.splitlines():
    m = re.match(r'([0-9a-f]+) (\w) (.*)', l)
    if m:
        syms.append((int(m.group(1), 16), m.group(3)))
addrs = [a for a, _ in syms]
def crate_of(name):
    n = name
    n = re.sub(r'^(<|_<)', '', n)
    n = n.lstrip('<&*(')
    m = re.match(r'([A-Za-z_][A-Za-z0-9_]*)::', n)
    if m: return m.group(1)
    if n.startswith(('git_', 'libgit2', 'http_parser', 'xdl_', 'pcre')) : return 'libgit2(C)'
    if n.startswith(('OPENSSL', 'ossl_', 'EVP_', 'SSL_', 'CRYPTO_', 'BN_', 'ERR_', 'X509', 'ASN1', 'OBJ_', 'RSA_', 'EC_', 'PEM_', 'BIO_')): return 'openssl(C)'
    if n.startswith('mi_') or n.startswith('_mi_'): return 'mimalloc(C)'
    if n.startswith('ring_') or 'ring_core' in n: return 'ring'
    return 'other:' + n.split('(')[0][:20]
pm = open(f'/proc/{pid}/pagemap', 'rb')
by_seg = collections.Counter(); by_crate = collections.Counter()
for lo, hi, perm, off in maps:
    n = (hi - lo) // PAGE
    pm.seek(lo // PAGE * 8)
    data = pm.read(n * 8)
    for i in range(n):
        (e,) = struct.unpack_from('<Q', data, i * 8)
        if not (e >> 63) & 1: continue
        by_seg[perm] += PAGE
        if 'x' in perm:
            va = lo + i * PAGE - base
            j = bisect.bisect_right(addrs, va) - 1
            # the symbols covering this page
            seen = collections.Counter()
            k = max(j, 0)
            while k < len(syms) and syms[k][0] < va + PAGE:
                seen[crate_of(syms[k][1])] += 1
                k += 1
            if not seen and j >= 0: seen[crate_of(syms[j][1])] += 1
            top = seen.most_common(1)[0][0] if seen else '?'
            by_crate[top] += PAGE
print('resident pages of', binary)
for perm, b in by_seg.items(): print(f'  {perm}: {b/1024:.0f} KiB')
print('text pages by the crate with most symbols on the page:')
for c, b in by_crate.most_common(40): print(f'  {b/1024:7.0f} KiB  {c}')
