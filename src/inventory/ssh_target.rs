//! A host's SSH settings as the `ssh` module's [`Target`] (the inventory
//! knows the ssh module; the ssh module knows no inventory).

use super::SshSettings;
use crate::ssh::{Sudo, Target};

impl SshSettings {
    /// The target for the inventory host `name`. Values the inventory left
    /// at their defaults stay `None`, so that `~/.ssh/config` can set them.
    pub fn target(&self, name: &str) -> Result<Target, String> {
        let s = self;
        let host_key_checking = s.host_key_checking;
        let known_hosts = s.known_hosts_path()?;
        let bastion = match &s.bastion {
            None => None,
            Some(b) => Some(Box::new(Target {
                name: format!("bastion {} (for {name})", b.address),
                address: b.address.clone(),
                port: b.port,
                user: b.user.clone(),
                identity_file: s.bastion_identity_path()?,
                bastion: None,
                direct: false,
                host_key_checking,
                known_hosts: known_hosts.clone(),
                sudo: Sudo::Never,
                timeout: s.timeout,
                ssh_config: None,
            })),
        };
        Ok(Target {
            name: name.to_string(),
            address: s.address.clone(),
            port: s.port_written.then_some(s.port),
            user: s.user_written.then(|| s.user.clone()),
            identity_file: s.identity_path()?,
            bastion,
            direct: s.bastion_none,
            host_key_checking,
            known_hosts,
            sudo: s.sudo,
            timeout: s.timeout,
            ssh_config: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_inventory_settings() {
        let text = "ssh:\n  port: 2222\n  bastion: jump.example.com\nhosts:\n  - {address: 10.0.0.11, role: server}\n  - {address: 10.0.0.12, role: agent, ssh: {bastion: none}}\n";
        let inv = crate::inventory::Inventory::parse(text, std::path::Path::new("/fleet/hosts.yaml")).unwrap();
        let s = inv.hosts[0].ssh_settings(&inv.ssh);
        let t = s.target("cp-1").unwrap();
        assert_eq!((t.port, t.user.as_deref()), (Some(2222), None), "only what was written is set");
        assert!(!t.direct);
        let b = t.bastion.unwrap();
        assert_eq!((b.address.as_str(), b.port, b.user.as_deref()), ("jump.example.com", None, None));
        let d = inv.hosts[1].ssh_settings(&inv.ssh).target("w").unwrap();
        assert!(d.direct && d.bastion.is_none());
        assert_eq!(t.sudo, Sudo::Auto);
        let mut t = s.target("cp-1").unwrap();
        t.ssh_config = Some("/nonexistent".into());
        t.user = Some("debian".into());
        let r = t.resolve().unwrap();
        assert_eq!(r.jump.unwrap().user, "debian", "a bastion's user defaults to its host's");
    }
}
