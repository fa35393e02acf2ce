package etcdtest

import clientv3 "go.etcd.io/etcd/client/v3"

// Commit commits a transaction for real.
type Commit func() (*clientv3.TxnResponse, error)

// CommitHook decides what happens around one transaction's real commit:
// then is the transaction's Then operations (to pick transactions by what
// they write); the hook calls commit, or not, and may stall before it,
// act after it (a term ending right after an acknowledged write) or change
// what the caller sees (an error on the way back).
type CommitHook func(then []clientv3.Op, commit Commit) (*clientv3.TxnResponse, error)

// HookTxn is txn with its Commit going through hook: what a test's KV
// wrapper returns from Txn to force one timing of etcd's.
func HookTxn(txn clientv3.Txn, hook CommitHook) clientv3.Txn {
	return &hookedTxn{Txn: txn, hook: hook}
}

type hookedTxn struct {
	clientv3.Txn
	hook CommitHook
	then []clientv3.Op
}

func (t *hookedTxn) If(cs ...clientv3.Cmp) clientv3.Txn { t.Txn = t.Txn.If(cs...); return t }
func (t *hookedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.then = append(t.then, ops...)
	t.Txn = t.Txn.Then(ops...)
	return t
}
func (t *hookedTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }
func (t *hookedTxn) Commit() (*clientv3.TxnResponse, error) {
	return t.hook(t.then, t.Txn.Commit)
}
