//go:build unix

package queue

import "golang.org/x/sys/unix"

// freeBytes returns the space on dir's filesystem available to an
// unprivileged writer (statfs f_bavail: the root-reserved blocks do not
// count, since Badger hits the wall where an ordinary user would).
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
