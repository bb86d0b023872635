#!/usr/bin/env bash
# Prepares snapshots in Manta for docker compose (compose.manta.yml): checks that Docker and Docker Compose
# are installed, checks the Manta settings, writes SNAPSHOT_BACKEND=manta plus the MANTA_* variables into the
# `_env` file compose hands to every node, with MANTA_KEY_ID as the key's MD5 fingerprint (aa:bb:..., the form
# Manta expects), and copies the private key into secrets/manta_private_key (mode 0600), which
# compose.manta.yml hands over as a Docker secret (MANTA_PRIVATE_KEY_FILE): the key is never in `_env`.
# Run `scripts/setup.sh --help` for the options.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/setup.sh [options] [PRIVATE_KEY_FILE]

Checks that Docker and Docker Compose are installed and that the Manta settings are usable, then writes them
to the env file (default: _env in the repository root) for SNAPSHOT_BACKEND=manta:

  SNAPSHOT_BACKEND=manta
  MANTA_URL, MANTA_USER, MANTA_SUBUSER, MANTA_ROLE, MANTA_BUCKET   from the options or the environment
  MANTA_KEY_ID        the MD5 fingerprint of the key (ssh-keygen -E md5), e.g. 1a:2b:...

and copies the private key file, as it is, to manta_private_key in the secrets directory (default: secrets
in the repository root, created with mode 0700), mode 0600: compose.manta.yml hands it to the containers as
a Docker secret (MANTA_PRIVATE_KEY_FILE=/run/secrets/manta_private_key).

Re-running it replaces only these lines and the key file; every other line of the env file is kept as it is,
except a MANTA_PRIVATE_KEY line (an older setup.sh wrote the key there), which is removed: autopilot refuses
MANTA_PRIVATE_KEY and MANTA_PRIVATE_KEY_FILE both set. The env file is written with mode 0600. The private key
is never printed. A key holding '#' is refused (autopilot reads '#' in a key as a newline).

PRIVATE_KEY_FILE is an unencrypted SSH private key registered with the Manta account (RSA, ECDSA or Ed25519,
PEM or OpenSSH format). Default: --key, else $MANTA_PRIVATE_KEY if it names a file, else ~/.ssh/id_rsa.

Options:
  --key FILE          the private key file (same as PRIVATE_KEY_FILE)
  --user NAME         Manta account (default: $MANTA_USER; required)
  --subuser NAME      Manta subuser (default: $MANTA_SUBUSER; unset: the line is left alone)
  --role NAME         Manta role (default: $MANTA_ROLE; unset: the line is left alone)
  --url URL           Manta endpoint (default: $MANTA_URL or https://us-east.manta.joyent.com)
  --bucket DIR        Manta directory for snapshots (default: $MANTA_BUCKET or /USER/stor); it must exist
  --env-file FILE     the env file to write (default: _env in the repository root)
  --secrets-dir DIR   where to write manta_private_key (default: secrets in the repository root)
  --no-docker-check   do not check for Docker and Docker Compose
  -h, --help          show this help
EOF
}

die() {
  echo "setup.sh: $*" >&2
  exit 1
}

case ${BASH_SOURCE[0]} in
  */*) script_dir=${BASH_SOURCE[0]%/*} ;;
  *) script_dir=. ;;
esac
root=$(cd "$script_dir/.." && pwd) # builtins only, so the Docker check below is the first thing needing PATH
key_file=""
user=${MANTA_USER:-}
subuser=${MANTA_SUBUSER:-}
role=${MANTA_ROLE:-}
url=${MANTA_URL:-https://us-east.manta.joyent.com}
bucket=${MANTA_BUCKET:-}
env_file="$root/_env"
secrets_dir="$root/secrets"
docker_check=1

need_value() { # option, remaining argument count
  [[ $2 -ge 2 ]] || die "$1 needs a value (see --help)"
}
while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --key) need_value "$1" $#; key_file=$2; shift 2 ;;
    --user) need_value "$1" $#; user=$2; shift 2 ;;
    --subuser) need_value "$1" $#; subuser=$2; shift 2 ;;
    --role) need_value "$1" $#; role=$2; shift 2 ;;
    --url) need_value "$1" $#; url=$2; shift 2 ;;
    --bucket) need_value "$1" $#; bucket=$2; shift 2 ;;
    --env-file) need_value "$1" $#; env_file=$2; shift 2 ;;
    --secrets-dir) need_value "$1" $#; secrets_dir=$2; shift 2 ;;
    --no-docker-check) docker_check=0; shift ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      [[ -z $key_file ]] || die "one private key file only (got $key_file and $1)"
      key_file=$1; shift ;;
  esac
done
if [[ $# -gt 0 ]]; then
  [[ -z $key_file && $# -eq 1 ]] || die "one private key file only (see --help)"
  key_file=$1
fi

# --- Docker --------------------------------------------------------------------------------------------------
if [[ $docker_check == 1 ]]; then
  command -v docker >/dev/null 2>&1 ||
    die "Docker is required but is not installed: see https://docs.docker.com/get-docker/ (or pass --no-docker-check)"
  if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    die "Docker Compose is required but is not installed: see https://docs.docker.com/compose/install/ (or pass --no-docker-check)"
  fi
fi

# --- Manta settings ------------------------------------------------------------------------------------------
command -v ssh-keygen >/dev/null 2>&1 || die "ssh-keygen is required to read the key's fingerprint: install OpenSSH"
if [[ -z $key_file ]]; then
  if [[ -n ${MANTA_PRIVATE_KEY:-} && ${MANTA_PRIVATE_KEY} != *PRIVATE\ KEY* && -f ${MANTA_PRIVATE_KEY} ]]; then
    key_file=$MANTA_PRIVATE_KEY
  else
    key_file="$HOME/.ssh/id_rsa"
  fi
fi
[[ -f $key_file && -r $key_file ]] || die "cannot read the private key file $key_file: pass the key registered with Manta"
[[ -n $user ]] || die "MANTA_USER is not set: pass --user ACCOUNT or export MANTA_USER"
[[ $user =~ ^[A-Za-z0-9._-]+$ ]] || die "MANTA_USER '$user' is not an account name (letters, digits, '.', '_', '-')"
[[ -z $subuser || $subuser =~ ^[A-Za-z0-9._-]+$ ]] || die "MANTA_SUBUSER '$subuser' is not a user name"
[[ $url =~ ^https?://[^[:space:]]+$ ]] || die "MANTA_URL '$url' must be an http:// or https:// URL"
bucket=${bucket:-/$user/stor}
[[ $bucket == /* && $bucket != *[[:space:]]* ]] || die "MANTA_BUCKET '$bucket' must be a Manta path like /$user/stor/mysql"
[[ $bucket == "/$user/"* ]] ||
  echo "setup.sh: note: MANTA_BUCKET $bucket is outside /$user; the account must have access to it" >&2

first_line=$(head -n 1 -- "$key_file")
[[ $first_line =~ ^-----BEGIN\ [A-Z\ ]*PRIVATE\ KEY-----$ ]] ||
  die "$key_file is not a PEM or OpenSSH private key (its first line should be -----BEGIN ... PRIVATE KEY-----)"
if grep -q '#' -- "$key_file"; then
  die "$key_file contains '#', which autopilot would read as a newline"
fi
public_key=$(ssh-keygen -y -P '' -f "$key_file" 2>/dev/null) ||
  die "$key_file cannot be read without a passphrase: autopilot needs an unencrypted key (ssh-keygen -p -N '' -f COPY)"
fingerprint=$(printf '%s\n' "$public_key" | ssh-keygen -E md5 -l -f - 2>/dev/null | awk '{print $2}') ||
  die "cannot compute the fingerprint of $key_file"
key_id=${fingerprint#MD5:}
[[ $key_id =~ ^([0-9a-f]{2}:){15}[0-9a-f]{2}$ ]] || die "unexpected fingerprint '$fingerprint' for $key_file"

# --- Write the env file --------------------------------------------------------------------------------------
names=(SNAPSHOT_BACKEND MANTA_URL MANTA_USER MANTA_SUBUSER MANTA_ROLE MANTA_BUCKET MANTA_KEY_ID)
declare -A value=(
  [SNAPSHOT_BACKEND]=manta
  [MANTA_URL]=$url
  [MANTA_USER]=$user
  [MANTA_BUCKET]=$bucket
  [MANTA_KEY_ID]=$key_id
)
[[ -z $subuser ]] || value[MANTA_SUBUSER]=$subuser
[[ -z $role ]] || value[MANTA_ROLE]=$role
declare -A written=()

dir=$(dirname -- "$env_file")
[[ -d $dir ]] || die "the directory of $env_file does not exist"
[[ -d $secrets_dir ]] || (umask 077 && mkdir -- "$secrets_dir" 2>/dev/null) ||
  die "cannot create the secrets directory $secrets_dir (its parent must exist)"
key_tmp=""
tmp=$(umask 077 && mktemp "$dir/.$(basename -- "$env_file").XXXXXX") || die "cannot write in $dir"
trap 'rm -f -- "$tmp" ${key_tmp:+"$key_tmp"}' EXIT
chmod 600 "$tmp"
key_tmp=$(umask 077 && mktemp "$secrets_dir/.manta_private_key.XXXXXX") || die "cannot write in $secrets_dir"
chmod 600 "$key_tmp"
cat -- "$key_file" >"$key_tmp" || die "cannot copy $key_file into $secrets_dir"
removed_key=0
{
  if [[ -f $env_file ]]; then
    while IFS= read -r line || [[ -n $line ]]; do
      name=${line#export }
      name=${name%%=*}
      if [[ $line == *=* && -n ${value[$name]+set} ]]; then
        printf '%s=%s\n' "$name" "${value[$name]}"
        written[$name]=1
      elif [[ $line == *=* && $name == MANTA_PRIVATE_KEY ]]; then
        removed_key=1
      else
        printf '%s\n' "$line"
      fi
    done <"$env_file"
  fi
  header=0
  for name in "${names[@]}"; do
    if [[ -n ${value[$name]+set} && -z ${written[$name]+set} ]]; then
      if [[ $header == 0 ]]; then
        [[ ! -s $env_file ]] || printf '\n'
        printf '# Snapshots in Manta (written by scripts/setup.sh)\n'
        header=1
      fi
      printf '%s=%s\n' "$name" "${value[$name]}"
    fi
  done
} >"$tmp"
mv -f -- "$key_tmp" "$secrets_dir/manta_private_key"
mv -f -- "$tmp" "$env_file"
trap - EXIT

echo "Wrote SNAPSHOT_BACKEND=manta and the MANTA_* settings to $env_file (mode 0600):"
echo "  MANTA_URL=$url MANTA_USER=$user${subuser:+ MANTA_SUBUSER=$subuser}${role:+ MANTA_ROLE=$role}"
echo "  MANTA_BUCKET=$bucket (must exist: mmkdir -p $bucket)"
echo "  MANTA_KEY_ID=$key_id"
[[ $removed_key == 0 ]] || echo "  (the MANTA_PRIVATE_KEY line an older setup.sh wrote there is removed)"
echo "Copied the private key $key_file to $secrets_dir/manta_private_key (mode 0600), which compose.manta.yml"
echo "hands over as a Docker secret: docker compose -f compose.yml -f compose.manta.yml up -d --scale mysql=3"
