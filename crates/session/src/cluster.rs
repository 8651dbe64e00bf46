//! The sessions of a cluster's selected nodes.

use ace_config::Node;

use crate::error::Result;
use crate::node::{NodeSession, SessionSettings};

/// Sessions to the selected nodes of a cluster, in the cluster's order.
#[derive(Debug)]
pub struct ClusterSession {
    nodes: Vec<NodeSession>,
}

impl ClusterSession {
    /// Connects to every node at once.
    ///
    /// # Errors
    ///
    /// The first node's failure, in node order (see
    /// [`NodeSession::connect`]).
    pub async fn connect(nodes: &[&Node], settings: &SessionSettings) -> Result<Self> {
        let mut handles = Vec::new();
        for node in nodes {
            let node = (*node).clone();
            let settings = settings.clone();
            handles.push(tokio::spawn(async move {
                NodeSession::connect(&node, &settings).await
            }));
        }
        let mut sessions = Vec::new();
        for handle in handles {
            let session = handle
                .await
                .map_err(|join| crate::SessionError::Settings {
                    node: "?".into(),
                    reason: format!("connect task failed: {join}"),
                })??;
            sessions.push(session);
        }
        Ok(ClusterSession { nodes: sessions })
    }

    /// The sessions, in node order.
    pub fn nodes(&self) -> &[NodeSession] {
        &self.nodes
    }

    /// The session of node `name`.
    pub fn node(&self, name: &str) -> Option<&NodeSession> {
        self.nodes.iter().find(|node| node.name() == name)
    }

    /// Checks on every node that ACE can work as `role`.
    ///
    /// # Errors
    ///
    /// The first node where the role is missing or ACE is not a member.
    pub async fn check_role(&self, role: &str) -> Result<()> {
        for node in &self.nodes {
            node.check_role(role).await?;
        }
        Ok(())
    }

    /// Checks on every node that `role` holds `privileges` on the table.
    ///
    /// # Errors
    ///
    /// The first node where the table is missing or a privilege is lacking.
    pub async fn check_table_privileges(
        &self,
        role: Option<&str>,
        schema: &str,
        table: &str,
        privileges: &[&str],
    ) -> Result<()> {
        for node in &self.nodes {
            node.check_table_privileges(role, schema, table, privileges)
                .await?;
        }
        Ok(())
    }

    /// Closes every pool.
    pub async fn close(&self) {
        for node in &self.nodes {
            node.close().await;
        }
    }
}
