package leader

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// KV returns kv with every write made only while the term lasts: each Put,
// Delete and Txn is sent as one transaction guarded by the fence's compare,
// the caller's own transaction nested inside it (its If, Then and Else
// keep their meaning). A write refused by the fence returns an error
// wrapping ErrNotLeader, changes nothing, and ends the term in this
// replica at once. Reads and compactions pass through.
//
// kv must see keys as stored: wrap a namespace around the fenced KV
// (namespace.NewKV(f.KV(cli), prefix)), not the other way round. Anything
// that holds this KV (a store, a run history) is fenced whole: give it to
// the code that acts as leader for one term only.
func (f Fence) KV(kv clientv3.KV) clientv3.KV { return fencedKV{KV: kv, f: f} }

type fencedKV struct {
	clientv3.KV
	f Fence
}

func (k fencedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	r, err := k.Do(ctx, clientv3.OpPut(key, val, opts...))
	if err != nil {
		return nil, err
	}
	return r.Put(), nil
}

func (k fencedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	r, err := k.Do(ctx, clientv3.OpDelete(key, opts...))
	if err != nil {
		return nil, err
	}
	return r.Del(), nil
}

func (k fencedKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	switch {
	case op.IsGet():
		return k.KV.Do(ctx, op)
	case op.IsTxn():
		cmps, then, els := op.Txn()
		resp, err := k.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		if err != nil {
			return clientv3.OpResponse{}, err
		}
		return resp.OpResponse(), nil
	}
	resp, err := k.commit(ctx, op)
	if err != nil {
		return clientv3.OpResponse{}, err
	}
	inner := resp.Responses[0]
	if p := inner.GetResponsePut(); p != nil {
		return (*clientv3.PutResponse)(p).OpResponse(), nil
	}
	return (*clientv3.DeleteResponse)(inner.GetResponseDeleteRange()).OpResponse(), nil
}

func (k fencedKV) Txn(ctx context.Context) clientv3.Txn { return &fencedTxn{ctx: ctx, kv: k} }

// commit applies op only while the term lasts.
func (k fencedKV) commit(ctx context.Context, op clientv3.Op) (*clientv3.TxnResponse, error) {
	if k.f.key == "" {
		return nil, fmt.Errorf("%w: no term", ErrNotLeader)
	}
	resp, err := k.KV.Txn(ctx).If(k.f.Cmps()...).Then(op).Commit()
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, k.f.lost()
	}
	return resp, nil
}

// fencedTxn collects a transaction and commits it nested in the fence's.
type fencedTxn struct {
	ctx             context.Context
	kv              fencedKV
	cmps            []clientv3.Cmp
	then, otherwise []clientv3.Op
}

func (t *fencedTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	t.cmps = append(t.cmps, cs...)
	return t
}

func (t *fencedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.then = append(t.then, ops...)
	return t
}

func (t *fencedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.otherwise = append(t.otherwise, ops...)
	return t
}

func (t *fencedTxn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.kv.commit(t.ctx, clientv3.OpTxn(t.cmps, t.then, t.otherwise))
	if err != nil {
		return nil, err
	}
	inner := (*clientv3.TxnResponse)(resp.Responses[0].GetResponseTxn())
	inner.Header = resp.Header
	return inner, nil
}
