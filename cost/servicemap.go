package cost

import (
	"strings"

	"github.com/ica-governance/ica"
)

// serviceRules maps Cost Management's ServiceName to ICA's resource types.
// Matching ignores case and surrounding space; the first rule that matches
// wins, and anything unmatched is "other".
//
//	ServiceName                               match      resource type
//	"Azure Kubernetes Service", "Kubernetes"  contains   aks
//	"Container Registry"                      contains   acr
//	"Storage", "Azure Blob Storage",
//	"Blob Storage"                            equals     blob
//	anything else (Virtual Machines, Bandwidth,
//	Load Balancer, Azure Data Lake Storage …)            other
//
// Note that AKS nodes are billed as "Virtual Machines" (and their disks as
// "Storage") under the node resource group; what is "aks" here is the AKS
// control plane (uptime SLA, cost analysis add-on). Sync the node resource
// group as its own scope to see it separately. Managed disks are billed under
// "Storage" too, so "blob" means Azure Storage as a whole.
var serviceRules = []struct {
	match string // lower case
	exact bool
	typ   string
}{
	{"kubernetes", false, ica.ResourceAKS},
	{"container registry", false, ica.ResourceACR},
	{"storage", true, ica.ResourceBlob},
	{"azure blob storage", true, ica.ResourceBlob},
	{"blob storage", true, ica.ResourceBlob},
}

// ResourceTypeOf returns the resource type (ica.ResourceAKS, ResourceACR,
// ResourceBlob or ResourceOther) of a Cost Management ServiceName; the table
// is on serviceRules.
func ResourceTypeOf(service string) string {
	s := strings.ToLower(strings.TrimSpace(service))
	for _, r := range serviceRules {
		if (r.exact && s == r.match) || (!r.exact && strings.Contains(s, r.match)) {
			return r.typ
		}
	}
	return ica.ResourceOther
}
