#!/usr/bin/env bash
# Start a private Orthanc PACS with its DICOMweb plugin (for the tests, or to try the PACS
# workflow on one machine). It does not use or touch the system service of the Debian package.
#
#   bash scripts/start_orthanc.sh STORAGE_DIR [--http_port 8042] [--dicom_port 0] [--aet MUNET]
#
# Writes STORAGE_DIR/orthanc.json (storage and index in STORAGE_DIR/db; listens on 127.0.0.1
# only: "RemoteAccessAllowed": false; no authentication; DICOM port disabled unless
# --dicom_port N > 0), then runs Orthanc in the foreground (stop it with Ctrl-C or SIGTERM).
# DICOMweb root: http://127.0.0.1:<http_port>/dicom-web. Install Orthanc with:
#   bash scripts/setup_env.sh --with-pacs    (apt-get install orthanc orthanc-dicomweb, as root)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 STORAGE_DIR [--http_port P] [--dicom_port P] [--aet AET]" >&2; exit 2; }
STORAGE="$1"; shift
HTTP_PORT=8042; DICOM_PORT=0; AET=MUNET
while [ $# -gt 0 ]; do
  case "$1" in
    --http_port) HTTP_PORT="$2"; shift 2;;
    --dicom_port) DICOM_PORT="$2"; shift 2;;
    --aet) AET="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done

ORTHANC="$(command -v Orthanc || true)"
[ -n "$ORTHANC" ] || { [ -x /usr/sbin/Orthanc ] && ORTHANC=/usr/sbin/Orthanc; }
[ -n "$ORTHANC" ] || { echo "Orthanc is not installed: run  bash scripts/setup_env.sh --with-pacs" >&2; exit 3; }
PLUGIN="${ORTHANC_DICOMWEB_PLUGIN:-}"
if [ -z "$PLUGIN" ]; then
  for candidate in /usr/share/orthanc/plugins/libOrthancDicomWeb.so /usr/lib/orthanc/plugins/libOrthancDicomWeb.so \
                   /usr/local/share/orthanc/plugins/libOrthancDicomWeb.so; do
    [ -f "$candidate" ] && { PLUGIN="$candidate"; break; }
  done
fi
[ -n "$PLUGIN" ] || { echo "the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)" >&2; exit 3; }

mkdir -p "$STORAGE/db"
STORAGE="$(cd "$STORAGE" && pwd)"
if [ "$DICOM_PORT" -gt 0 ]; then DICOM_SERVER=true; else DICOM_SERVER=false; DICOM_PORT=4242; fi
cat > "$STORAGE/orthanc.json" <<JSON
{
  "Name": "MUNET-PACS",
  "StorageDirectory": "$STORAGE/db",
  "IndexDirectory": "$STORAGE/db",
  "StorageCompression": false,
  "HttpServerEnabled": true,
  "HttpPort": $HTTP_PORT,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": $DICOM_SERVER,
  "DicomPort": $DICOM_PORT,
  "DicomAet": "$AET",
  "HttpThreadsCount": 8,
  "ConcurrentJobs": 1,
  "SaveJobs": false,
  "Plugins": ["$PLUGIN"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": true, "Host": "127.0.0.1", "Ssl": false}
}
JSON
echo "Orthanc: http://127.0.0.1:$HTTP_PORT (DICOMweb: http://127.0.0.1:$HTTP_PORT/dicom-web), storage $STORAGE/db" >&2
exec "$ORTHANC" "$STORAGE/orthanc.json"
