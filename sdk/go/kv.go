package htlcgate

import "strconv"

// KVErrorKind says why the key-value store refused an operation (the world's
// `kv-error` case).
type KVErrorKind uint8

const (
	// KVKeyTooLong: the key is longer than the plugin's kv_max_key_bytes
	// (KVError.Limit).
	KVKeyTooLong KVErrorKind = iota
	// KVValueTooLong: the value is longer than the plugin's
	// kv_max_value_bytes (KVError.Limit).
	KVValueTooLong
	// KVTooManyKeys: the namespace already holds kv_max_keys keys
	// (KVError.Limit); delete some first.
	KVTooManyKeys
	// KVStorage: the host's database failed (KVError.Message says why).
	KVStorage
)

// KVError is why the key-value store refused an operation; nothing was
// changed. KVGet, KVSet and KVDelete return it as a *KVError: inspect it with
// errors.As.
type KVError struct {
	// Kind is which refusal this is.
	Kind KVErrorKind
	// Limit is the limit that was hit (KVKeyTooLong, KVValueTooLong,
	// KVTooManyKeys).
	Limit uint32
	// Message is the host's reason (KVStorage).
	Message string
}

// Error names the limit or the failure and what to do about it.
func (e *KVError) Error() string {
	limit := strconv.FormatUint(uint64(e.Limit), 10)
	switch e.Kind {
	case KVKeyTooLong:
		return "kv: key longer than the plugin's limit of " + limit + " bytes (kv_max_key_bytes)"
	case KVValueTooLong:
		return "kv: value longer than the plugin's limit of " + limit + " bytes (kv_max_value_bytes)"
	case KVTooManyKeys:
		return "kv: the namespace already holds its limit of " + limit + " keys (kv_max_keys); delete some"
	case KVStorage:
		return "kv: the host's storage failed: " + e.Message
	}
	return "kv: refused (" + e.Message + ")"
}

// KVGet is the value stored under key in this plugin's namespace, and whether
// there is one. Namespaces are per plugin name: a new version of the plugin
// sees what the old one wrote, and values survive restarts (they are on disk
// before any verdict decided after the write reaches LND). Needs the `kv`
// grant (`grants = ["kv"]` in the plugin's [[plugin]] entry): htlcgate refuses
// to load a plugin that calls it without. Outside wasip1 (tests on the build
// machine) a map stands in for the store.
func KVGet(key []byte) (value []byte, found bool, err error) { return hostKVGet(key) }

// KVSet stores value under key in this plugin's namespace (see KVGet). Needs
// the `kv` grant.
func KVSet(key, value []byte) error { return hostKVSet(key, value) }

// KVDelete removes key from this plugin's namespace and reports whether it was
// there (see KVGet). Needs the `kv` grant.
func KVDelete(key []byte) (existed bool, err error) { return hostKVDelete(key) }
