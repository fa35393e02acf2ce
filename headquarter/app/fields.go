package app

// field names one top-level JSON field of an app, for presence tracking.
type field uint8

const (
	fID field = iota
	fCmd
	fArgs
	fUser
	fEnv
	fSecrets
	fInstances
	fCPUs
	fMem
	fDisk
	fGPUs
	fExecutor
	fConstraints
	fURIs
	fFetch
	fStoreURLs
	fPortDefinitions
	fPorts
	fRequirePorts
	fBackoffSeconds
	fBackoffFactor
	fMaxLaunchDelaySeconds
	fContainer
	fNetworks
	fHealthChecks
	fReadinessChecks
	fDependencies
	fUpgradeStrategy
	fLabels
	fAcceptedResourceRoles
	fVersion
	fVersionInfo
	fKillSelection
	fUnreachableStrategy
	fTaskKillGracePeriodSeconds
	fRole
	fResidency
	numFields
)

// fieldNames returns the JSON names, indexed by field. A function, not a
// package variable, so the package keeps no tables beside its regexps.
func fieldNames() [numFields]string {
	return [numFields]string{
		fID: "id", fCmd: "cmd", fArgs: "args", fUser: "user", fEnv: "env", fSecrets: "secrets",
		fInstances: "instances", fCPUs: "cpus", fMem: "mem", fDisk: "disk", fGPUs: "gpus",
		fExecutor: "executor", fConstraints: "constraints", fURIs: "uris", fFetch: "fetch",
		fStoreURLs: "storeUrls", fPortDefinitions: "portDefinitions", fPorts: "ports",
		fRequirePorts: "requirePorts", fBackoffSeconds: "backoffSeconds", fBackoffFactor: "backoffFactor",
		fMaxLaunchDelaySeconds: "maxLaunchDelaySeconds", fContainer: "container", fNetworks: "networks",
		fHealthChecks: "healthChecks", fReadinessChecks: "readinessChecks", fDependencies: "dependencies",
		fUpgradeStrategy: "upgradeStrategy", fLabels: "labels", fAcceptedResourceRoles: "acceptedResourceRoles",
		fVersion: "version", fVersionInfo: "versionInfo", fKillSelection: "killSelection",
		fUnreachableStrategy: "unreachableStrategy", fTaskKillGracePeriodSeconds: "taskKillGracePeriodSeconds",
		fRole: "role", fResidency: "residency",
	}
}

// fieldByName finds the field with JSON name n.
func fieldByName(n string) (field, bool) {
	names := fieldNames()
	for f := range numFields {
		if names[f] == n {
			return f, true
		}
	}
	return 0, false
}

// fieldSet is a set of fields; 37 of them fit a word.
type fieldSet uint64

func (s fieldSet) has(f field) bool      { return s&(1<<f) != 0 }
func (s *fieldSet) add(f field)          { *s |= 1 << f }
func (s fieldSet) with(f field) fieldSet { return s | 1<<f }
