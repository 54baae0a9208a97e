/* A container's daemon holding file locks: an flock on argv[1], a POSIX lock on argv[2];
 * it appends a counter to argv[3] every 20 ms. Built static (no libc in a busybox rootfs). */
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int a = open(argv[1], O_RDWR | O_CREAT, 0600);
	int b = open(argv[2], O_RDWR | O_CREAT, 0600);
	if (a < 0 || b < 0 || flock(a, LOCK_EX | LOCK_NB) != 0)
		return 1;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (fcntl(b, F_SETLK, &fl) != 0)
		return 1;
	for (long i = 1;; i++) {
		FILE *log = fopen(argv[3], "a");
		if (log) {
			fprintf(log, "%ld\n", i);
			fclose(log);
		}
		usleep(20000);
	}
}
