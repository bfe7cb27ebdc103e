"""`kedge-agent firstboot`: a freshly flashed board with a seed enrolls, checks, repairs,
joins and starts reporting with no keystroke (docs/firstboot.md).

intake (the seed off the boot partition) · report (each phase to the journal, the file
`status` reads, and MQTT) · phases (the steps in order). Its progress on disk is
agent.firstboot_state, which the daemon reads too."""
