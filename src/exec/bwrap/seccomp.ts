/**
 * A seccomp filter for bubblewrap sandboxes, as classic BPF for `bwrap
 * --seccomp FD`. It rejects with EPERM system calls that widen the kernel's
 * attack surface and that a stage has no use for in the tested images. These
 * are mounts and namespaces, kernel modules and kexec, keyrings, BPF and
 * perf, userfaultfd, clock and host settings, tracing other processes, and
 * swap, reboot and accounting. Everything else is allowed; the tests run the
 * Claude Code CLI under it. A process of another architecture ABI (x32,
 * 32-bit) is killed.
 */

/** AUDIT_ARCH_X86_64 from linux/audit.h. */
const AUDIT_ARCH_X86_64 = 0xc000003e

/** Syscalls at or above this number on x86_64 are the x32 ABI. */
const X32_SYSCALL_BIT = 0x40000000

/** Blocked system calls and their x86_64 numbers, from the kernel's asm/unistd_64.h. */
const BLOCKED_X86_64: Record<string, number> = {
  mount: 165,
  umount2: 166,
  pivot_root: 155,
  unshare: 272,
  setns: 308,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  open_tree: 428,
  move_mount: 429,
  mount_setattr: 442,
  open_by_handle_at: 304,
  name_to_handle_at: 303,
  init_module: 175,
  finit_module: 313,
  delete_module: 176,
  create_module: 174,
  get_kernel_syms: 177,
  query_module: 178,
  kexec_load: 246,
  kexec_file_load: 320,
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  bpf: 321,
  perf_event_open: 298,
  userfaultfd: 323,
  lookup_dcookie: 212,
  ptrace: 101,
  process_vm_readv: 310,
  process_vm_writev: 311,
  syslog: 103,
  clock_settime: 227,
  clock_adjtime: 305,
  settimeofday: 164,
  adjtimex: 159,
  sethostname: 170,
  setdomainname: 171,
  iopl: 172,
  ioperm: 173,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  acct: 163,
  quotactl: 179,
  uselib: 134,
  ustat: 136,
  sysfs: 139,
  _sysctl: 156,
  nfsservctl: 180,
  vhangup: 153
}

// Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
const LD_W_ABS = 0x20
const JEQ_K = 0x15
const JGE_K = 0x35
const RET_K = 0x06
const SECCOMP_RET_KILL_PROCESS = 0x80000000
const SECCOMP_RET_ERRNO = 0x00050000
const SECCOMP_RET_ALLOW = 0x7fff0000
const EPERM = 1
/** Offsets in struct seccomp_data. */
const OFFSET_NR = 0
const OFFSET_ARCH = 4

interface Instruction {
  code: number
  jt: number
  jf: number
  k: number
}

/**
 * Returns the filter as the bytes of a `struct sock_filter` array, or
 * undefined on an architecture it has no syscall numbers for.
 */
export function seccompFilter (arch: string = process.arch): Buffer | undefined {
  if (arch !== 'x64') {
    return undefined
  }
  const numbers = Object.values(BLOCKED_X86_64)
  const program: Instruction[] = [
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFFSET_ARCH },
    { code: JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
    { code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_KILL_PROCESS },
    { code: LD_W_ABS, jt: 0, jf: 0, k: OFFSET_NR },
    { code: JGE_K, jt: 0, jf: 1, k: X32_SYSCALL_BIT },
    { code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_KILL_PROCESS }
  ]
  // Each comparison jumps over the ones after it and the ALLOW return, to
  // the ERRNO return at the end.
  numbers.forEach((number, index) => {
    program.push({ code: JEQ_K, jt: numbers.length - index, jf: 0, k: number })
  })
  program.push({ code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW })
  program.push({ code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | EPERM })
  return encode(program)
}

function encode (program: Instruction[]): Buffer {
  const bytes = Buffer.alloc(program.length * 8)
  program.forEach((instruction, index) => {
    const offset = index * 8
    bytes.writeUInt16LE(instruction.code, offset)
    bytes.writeUInt8(instruction.jt, offset + 2)
    bytes.writeUInt8(instruction.jf, offset + 3)
    bytes.writeUInt32LE(instruction.k >>> 0, offset + 4)
  })
  return bytes
}
