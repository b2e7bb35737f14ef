/*
 * A 32-bit (i386) program for tests/seccomp.rs, built there with `gcc -m32 -static`.
 *
 * Each check makes one syscall through the i386 ABI (`int $0x80`, i386 syscall numbers) and
 * prints `<name> <raw return value>`: a negative value is -errno. Under containerd's default
 * seccomp profile getpid and uname are allowed, while unshare(CLONE_NEWUSER) and keyctl are not
 * (EPERM). With an argument, only that check runs.
 */
#include <stdio.h>
#include <string.h>

#define NR_GETPID 20
#define NR_UNAME 122
#define NR_KEYCTL 288
#define NR_UNSHARE 310
#define NR_MKDIR 39

#define CLONE_NEWUSER 0x10000000
#define KEYCTL_GET_KEYRING_ID 0

static long sys3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory");
	return ret;
}

static char uts[6 * 65];

static long check(const char *name)
{
	if (strcmp(name, "getpid") == 0)
		return sys3(NR_GETPID, 0, 0, 0);
	if (strcmp(name, "uname") == 0)
		return sys3(NR_UNAME, (long)uts, 0, 0);
	if (strcmp(name, "unshare") == 0)
		return sys3(NR_UNSHARE, CLONE_NEWUSER, 0, 0);
	if (strcmp(name, "keyctl") == 0)
		return sys3(NR_KEYCTL, KEYCTL_GET_KEYRING_ID, -1 /* thread keyring */, 0);
	if (strcmp(name, "mkdir") == 0)
		return sys3(NR_MKDIR, (long)"/tmp/seccomp-i386-dir", 0755, 0);
	fprintf(stderr, "unknown check %s\n", name);
	return 1000;
}

int main(int argc, char **argv)
{
	static const char *all[] = { "getpid", "uname", "unshare", "keyctl" };
	if (argc > 1) {
		printf("%s %ld\n", argv[1], check(argv[1]));
		return 0;
	}
	for (unsigned i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		printf("%s %ld\n", all[i], check(all[i]));
	return 0;
}
