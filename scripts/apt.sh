# Sourced by the install scripts. `apt_install PACKAGE...` installs the Debian packages that are not
# installed yet, quietly, with sudo when not root; re-running it costs one dpkg query a package.
# VELESIO_NO_APT=1 (`nix develop` sets it) skips it: the tools then come from that environment.
apt_install() {
    [[ -z ${VELESIO_NO_APT:-} ]] || return 0
    local package missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    printf '\033[1mvelesio:\033[0m installing Debian packages: %s\n' "${missing[*]}"
    local sudo_cmd=""
    [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
