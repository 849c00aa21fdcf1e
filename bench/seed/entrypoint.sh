#!/bin/bash
# Root's boot step of the seed: hand the mounted home (the volume) to the user, initialise the
# GPU driver when there is one, then run the user's part.
user="$1"
echo "entrypoint: giving /home/$user to $user"
chown "$user:$user" "/home/$user"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi
fi
echo "entrypoint: running post-initialization as $user"
su -c "bash /post-initialization.sh" "$user"
