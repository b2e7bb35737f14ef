# Shared by the tests/vm scripts (sourced, not run): logging, the cache directory, the Debian
# mirror apt uses, and the private apt configuration that never touches /etc/apt.
#
# Environment:
#   MYSHIM_VM_CACHE   where images and the private apt state live (default /var/cache/myshim-vm)
#   MYSHIM_VM_MIRROR  the Debian mirror (default: the one of /etc/apt/sources.list(.d) that
#                     serves the host's release, main component)

vm_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$vm_dir/../.." && pwd)
cache_dir=${MYSHIM_VM_CACHE:-/var/cache/myshim-vm}

log() { echo "vm: $*" >&2; }
die() { echo "vm: error: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root ($*)"; }

# valid_guest NAME: tests/vm/guests/NAME.conf exists (and NAME is a plain word)
valid_guest() {
    [[ $1 =~ ^[a-z0-9][a-z0-9-]*$ ]] && [ -f "$vm_dir/guests/$1.conf" ]
}

guest_names() {
    local f
    for f in "$vm_dir"/guests/*.conf; do basename "$f" .conf; done
}

# Entries of the host's apt sources as "URI SUITE COMPONENTS..." lines, one-line .list files
# and deb822 .sources files alike (Types: deb only; Enabled: no skipped).
apt_source_lines() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [opts] URI SUITE COMPONENTS...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 {$1 = ""; print}'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822 stanzas separated by blank lines; fields folded on one line each
        awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "") {
                    n = split(uris, u, " "); m = split(suites, s, " ")
                    for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j], comps
                }
                types = uris = suites = comps = ""; enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                line = $0; key = tolower(line); sub(/:.*/, "", key)
                val = line; sub(/^[^:]*:[ \t]*/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "components") comps = val
                else if (key == "enabled") enabled = tolower(val)
            }
            END { flush() }
        ' "$f"
    done
}

# The mirror apt uses for the host's own release (main component): guests are bootstrapped
# from the same place.
debian_mirror() {
    if [ -n "${MYSHIM_VM_MIRROR:-}" ]; then
        echo "${MYSHIM_VM_MIRROR%/}"
        return
    fi
    local codename uri suite comps
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release: set MYSHIM_VM_MIRROR"
    while read -r uri suite comps; do
        [ "$suite" = "$codename" ] || continue
        [[ " $comps " == *" main "* ]] || continue
        echo "${uri%/}"
        return
    done < <(apt_source_lines)
    die "no apt source for $codename main in /etc/apt/sources.list(.d): set MYSHIM_VM_MIRROR"
}

# Private apt configuration (for bookworm-backports): its own sources, lists and package cache
# under $cache_dir/apt; /etc/apt is read for nothing but its keyrings, and never written.
# Prints the path of the apt.conf to pass as APT_CONFIG.
private_apt_config() {
    local mirror codename d
    mirror=$(debian_mirror)
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    d=$cache_dir/apt
    mkdir -p "$d/sources.list.d" "$d/lists/partial" "$d/cache/archives/partial" "$d/preferences.d"
    # the host's own sources for its release (and its -updates, -security), plus backports
    local uri suite comps kr=/usr/share/keyrings/debian-archive-keyring.gpg
    {
        while read -r uri suite comps; do
            [[ $suite == "$codename" || $suite == "$codename"-* ]] || continue
            echo "deb [signed-by=$kr] $uri $suite $comps"
        done < <(apt_source_lines)
        echo "deb [signed-by=$kr] $mirror $codename-backports main"
    } | sort -u >"$d/sources.list.d/myshim-vm.list"
    : >"$d/sources.list"
    cat >"$d/apt.conf" <<CONF
Dir::Etc::SourceList "$d/sources.list";
Dir::Etc::SourceParts "$d/sources.list.d";
Dir::Etc::Preferences "$d/preferences";
Dir::Etc::PreferencesParts "$d/preferences.d";
Dir::State::Lists "$d/lists";
Dir::Cache "$d/cache";
APT::Get::List-Cleanup "true";
CONF
    : >"$d/preferences"
    echo "$d/apt.conf"
}
