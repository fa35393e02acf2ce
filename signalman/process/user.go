package process

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// CheckUser says whether a task may run as name here: any user of this
// machine when garrison runs as root (it switches to that user), else only
// garrison's own user. headquarter asks it to refuse an app up front.
func CheckUser(name string) error {
	_, err := credential(name)
	return err
}

// credential is what a task of Marathon's `user` name runs with: nil for
// garrison's own user (or none given), the user's uid, gid and groups when
// garrison is root and can switch to it.
func credential(name string) (*syscall.Credential, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if _, numeric := strconv.Atoi(name); err != nil && numeric == nil {
		u, err = user.LookupId(name)
	}
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	if int(uid) == os.Getuid() {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		me := strconv.Itoa(os.Getuid())
		if cur, err := user.Current(); err == nil {
			me = cur.Username
		}
		return nil, fmt.Errorf("garrison runs as %s, not root, so it cannot start processes as %q", me, name)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: gid %q: %w", name, u.Gid, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("user %q: groups: %w", name, err)
	}
	for _, g := range ids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			cred.Groups = append(cred.Groups, uint32(n))
		}
	}
	return cred, nil
}
