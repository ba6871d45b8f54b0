# Runs at build time (a RUN step): records what the build saw, inside the image.
set -eu
mkdir -p "$APP_HOME/generated"
{
    echo "built in $(pwd) as $(id -u):$(id -g)"
    echo "greeting: $GREETING"
    echo "files: $(ls | sort | tr '\n' ' ')"
} > "$APP_HOME/generated/build-info.txt"
