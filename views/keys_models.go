package views

// KeysPage shows the cluster's data keys and offers Rotate Key.
type KeysPage struct {
	Page
	ActiveKeyID string
	// ActiveAge is how long the active key has sealed new secrets
	// ("3 days"), empty when unknown.
	ActiveAge    string
	Keys         []KeyRow
	ClearSecrets int
	// RotationID is the rotation in progress, if one is.
	RotationID string
	// CanRotate: an administrator, and no rotation in progress.
	CanRotate bool
	Phrase    string
	FormError string
}

// KeyRow is one data key of the ring.
type KeyRow struct {
	ID      string
	Active  bool
	Missing bool
	Added   string
	Secrets int
}
