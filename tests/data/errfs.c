/* errfs: a FUSE filesystem whose files answer read() with an error, for tests/faults.rs.
 *
 * A sysfs attribute that returns EAGAIN (hwmon drivers do while a sensor is busy) cannot be made
 * with a file on an ordinary filesystem; FUSE passes the errno a read returns here to the reader
 * unchanged, through the real kernel. Files:
 *   eagain   read -> EAGAIN
 *   eio      read -> EIO
 *   value    "42000\n"
 * Built by the test with: gcc -o errfs errfs.c $(pkg-config --cflags --libs fuse3)
 * Run: errfs -f -s <mountpoint>   (as root; SIGTERM unmounts)
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fuse.h>
#include <string.h>
#include <sys/stat.h>

static const char *VALUE = "42000\n";

static int is_file(const char *path) {
    return !strcmp(path, "/eagain") || !strcmp(path, "/eio") || !strcmp(path, "/value");
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    memset(st, 0, sizeof *st);
    if (!strcmp(path, "/")) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
        return 0;
    }
    if (!is_file(path))
        return -ENOENT;
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    (void)off, (void)fi, (void)flags;
    if (strcmp(path, "/"))
        return -ENOENT;
    const char *names[] = {".", "..", "eagain", "eio", "value"};
    for (unsigned i = 0; i < sizeof names / sizeof *names; i++)
        fill(buf, names[i], NULL, 0, 0);
    return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi) {
    if (!is_file(path))
        return -ENOENT;
    fi->direct_io = 1; /* every read reaches fs_read, as every sysfs read reaches its driver */
    return 0;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi;
    if (!strcmp(path, "/eagain"))
        return -EAGAIN;
    if (!strcmp(path, "/eio"))
        return -EIO;
    size_t len = strlen(VALUE);
    if ((size_t)off >= len)
        return 0;
    if (size > len - off)
        size = len - off;
    memcpy(buf, VALUE + off, size);
    return (int)size;
}

static const struct fuse_operations ops = {
    .getattr = fs_getattr,
    .readdir = fs_readdir,
    .open = fs_open,
    .read = fs_read,
};

int main(int argc, char *argv[]) { return fuse_main(argc, argv, &ops, NULL); }
