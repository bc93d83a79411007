package shutdown

import (
	"iter"
	"math/bits"
	"net"
	"net/http"
	"sync/atomic"
	"unsafe"
)

// serverConn is a server connection seen through the hooks: its state,
// seen through ConnState, and its slot, made by ConnContext.
type serverConn struct {
	c net.Conn
	// An http.ConnState: StateIdle until ConnState has said otherwise.
	// Set without serverMu for StateActive and StateIdle, by the
	// connection's goroutine.
	state atomic.Int32
	slot  *connSlot // nil without ConnContext; set under serverMu
}

// serverConns is the set of a Shutdowner's server connections. It is
// changed under the Shutdowner's serverMu, but get needs no lock: net/http
// calls ConnState twice a request, and a mutex and a map there cost a third
// of what a request costs through the middleware with the hooks
// (BenchmarkMiddleware's instruction counts, README). sync.Map, read
// without a lock too, hashes and compares its keys as a map does, which
// costs as much as the lock (ifaceWords).
//
// It is a hash table of open addressing, probed in line: an entry
// forgotten leaves a tombstone, so that get, which looks only for a
// connection present, never stops short of it; add makes a new table,
// without tombstones, when entries and tombstones fill three quarters
// of it, and publishes it whole. A get that loaded the old table finds
// the same entries in it, since they are shared.
type serverConns struct {
	table atomic.Pointer[connTable]
	live  int // entries, under serverMu
	used  int // entries and tombstones in the current table, under serverMu
}

// connTable is a table of serverConns, len(slots) a power of two, 1<<(64-shift).
type connTable struct {
	slots []atomic.Pointer[serverConn]
	shift uint
}

// tombstone fills a slot whose entry has been forgotten; its c is nil,
// which no connection looked up is.
var tombstone = new(serverConn)

// ifaceWords are the two words of a non-empty interface value, as the gc
// toolchain lays it out (runtime.iface): its itab, unique to the pair of
// the interface type and the dynamic type, and its pointer.
//
// A connection's words are its identity: net/http gives the hooks the
// same interface value, the one its listener's Accept returned, for the
// connection's life. Hashing and comparing the interface as a
// map[net.Conn] does (maphash.Comparable and ==), through the runtime's
// type-generic hash and equality, cost more than the lock this table
// saves: 968 instructions a request in BenchmarkMiddleware, against 830
// with the lock and about 650 with the words.
type ifaceWords struct{ tab, data unsafe.Pointer }

// wordsOf returns the words of *i, which must be of a non-empty interface
// type.
func wordsOf[I any](i *I) ifaceWords { return *(*ifaceWords)(unsafe.Pointer(i)) }

// home returns the slot where the probe for k starts: k's pointer, hashed
// by Fibonacci's multiplier, whose high bits mix all of the pointer's.
func (t *connTable) home(k ifaceWords) int {
	return int(uint64(uintptr(k.data)) * 0x9e3779b97f4a7c15 >> t.shift)
}

// get returns c's entry, or nil. It is safe to call without serverMu, and
// concurrently with the changes made under it.
func (m *serverConns) get(c net.Conn) *serverConn {
	t := m.table.Load()
	if t == nil {
		return nil
	}
	_, sc := t.find(wordsOf(&c))
	return sc
}

// find returns the entry keyed k and its slot, or nil and the empty slot
// where the probe for it ended.
func (t *connTable) find(k ifaceWords) (int, *serverConn) {
	mask := len(t.slots) - 1
	for i := t.home(k); ; i = (i + 1) & mask {
		sc := t.slots[i].Load()
		if sc == nil {
			return i, nil
		}
		if wordsOf(&sc.c) == k {
			return i, sc
		}
	}
}

// of returns c's entry, made if need be. serverMu must be held.
func (m *serverConns) of(c net.Conn) *serverConn {
	if sc := m.get(c); sc != nil {
		return sc
	}
	return m.add(c)
}

// add makes c's entry, which it has not, and returns it. serverMu must be
// held.
func (m *serverConns) add(c net.Conn) *serverConn {
	sc := &serverConn{c: c}
	sc.state.Store(int32(http.StateIdle))
	t := m.table.Load()
	if t == nil || (m.used+1)*4 > len(t.slots)*3 {
		t = m.grow()
	}
	mask := len(t.slots) - 1
	i := t.home(wordsOf(&c))
	for {
		if old := t.slots[i].Load(); old == nil || old == tombstone {
			if old == nil {
				m.used++
			}
			break
		}
		i = (i + 1) & mask
	}
	t.slots[i].Store(sc)
	m.live++
	return sc
}

// grow publishes a new table with room for twice the entries, and none of
// the tombstones, of the current one, and returns it.
func (m *serverConns) grow() *connTable {
	n := 16
	for n*3 < (m.live+1)*2*4 {
		n *= 2
	}
	t := &connTable{slots: make([]atomic.Pointer[serverConn], n), shift: uint(64 - bits.TrailingZeros(uint(n)))}
	if old := m.table.Load(); old != nil {
		for i := range old.slots {
			if sc := old.slots[i].Load(); sc != nil && sc != tombstone {
				j := t.home(wordsOf(&sc.c))
				for t.slots[j].Load() != nil {
					j = (j + 1) & (n - 1)
				}
				t.slots[j].Store(sc)
			}
		}
	}
	m.used = m.live
	m.table.Store(t)
	return t
}

// remove forgets c's entry, if it has one. serverMu must be held.
func (m *serverConns) remove(c net.Conn) {
	t := m.table.Load()
	if t == nil {
		return
	}
	if i, sc := t.find(wordsOf(&c)); sc != nil {
		t.slots[i].Store(tombstone)
		m.live--
	}
}

// all yields every entry; the loop may remove the one it is given.
// serverMu must be held.
func (m *serverConns) all() iter.Seq[*serverConn] {
	return func(yield func(*serverConn) bool) {
		t := m.table.Load()
		if t == nil {
			return
		}
		for i := range t.slots {
			if sc := t.slots[i].Load(); sc != nil && sc != tombstone && !yield(sc) {
				return
			}
		}
	}
}

// len returns the number of entries. serverMu must be held.
func (m *serverConns) len() int { return m.live }
