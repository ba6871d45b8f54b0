# The image's entrypoint.
echo "$GREETING"
cat "$APP_HOME/generated/build-info.txt"
