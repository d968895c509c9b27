package views

import "time"

// The access-request workflow's view models.

// RequestRow is an access request in a list or on its page.
type RequestRow struct {
	ID                 string
	Account            string // user@asset
	Address            string
	Requester          string
	Reason             string
	State              string
	StateLabel         string
	Tone               string
	ApprovalRequired   bool
	Approvers          string
	DurationMinutes    int
	ChangeAfterCheckin bool
	RequestedAt        time.Time
	DecidedBy          string
	DecidedAt          *time.Time
	Comment            string
	ExpiresAt          *time.Time
	// Left is the time left of a check-out, in words ("42 min left").
	Left           string
	Releases       int
	LastReleasedAt *time.Time
	EndedAt        *time.Time
	EndedBy        string
	// What the viewer may do with it.
	CanRelease bool
	CanCheckin bool
	CanDecide  bool
}

// RequestsPage is "My requests".
type RequestsPage struct {
	Page
	// Unavailable says why requests cannot be made here now.
	Unavailable string
	CanRequest  bool
	Open        []RequestRow
	Past        []RequestRow
	// Search finds accounts to request.
	Search   string
	Accounts []AccountRow
	Searched bool
	// Dropped are the user's requests made in Offline Workflow and dropped
	// at Resume Online (views/offline.templ).
	Dropped []DroppedRequest
}

// RequestFormPage asks for the reason of a request.
type RequestFormPage struct {
	Page
	Unavailable string
	Account     AccountRow
	Terms       []string // the policy's terms in words
	Reason      string
	FormError   string
}

// RequestPage is one request, with what the viewer may do.
type RequestPage struct {
	Page
	Unavailable string
	Request     RequestRow
	IsMine      bool
}

// PasswordPage shows a released password once.
type PasswordPage struct {
	Page
	Request  RequestRow
	Password string
}

// ApprovalsPage lists requests waiting for the viewer's decision.
type ApprovalsPage struct {
	Page
	Unavailable string
	Pending     []RequestRow
	Recent      []RequestRow
}

// AssetRow is an asset.
type AssetRow struct {
	ID, Name, Address, Platform string
	Accounts                    int
}

// AccountRow is an account (never its password).
type AccountRow struct {
	ID, AssetID, Asset, Address, Platform, Username string
	PasswordChangedAt                               time.Time
	Holder                                          string
	HeldUntil                                       *time.Time
	Policies                                        int
}

// AssetsPage is "Assets & accounts".
type AssetsPage struct {
	Page
	CanEdit   bool
	ReadOnly  string // why changes are not possible here
	Search    string
	Assets    []AssetRow
	Accounts  []AccountRow
	Total     int
	Shown     int
	FormError string
	FormField string
	Form      string // which form the error belongs to: asset, account, import
	// Import problems, one per bad line.
	ImportProblems []ImportProblem
	ImportColumns  string
	CanRequest     bool
}

// ImportProblem is a bad line of an import file.
type ImportProblem struct {
	Line    int
	Field   string
	Message string
}

// PolicyRow is a policy.
type PolicyRow struct {
	ID                 string
	Name               string
	Accounts           []string // user@asset, the first few
	More               int      // how many more accounts it covers
	Requesters         string
	Approvers          string
	ApprovalRequired   bool
	DurationMinutes    int
	ChangeAfterCheckin bool
}

// PoliciesPage lists the policies; administrators add and delete them.
type PoliciesPage struct {
	Page
	CanEdit   bool
	ReadOnly  string
	Policies  []PolicyRow
	FormError string
	FormField string
	// The form as typed, to show again after an error.
	Name, Accounts, Requesters, Approvers string
	ApprovalRequired, ChangeAfterCheckin  bool
	DurationMinutes                       int
}
