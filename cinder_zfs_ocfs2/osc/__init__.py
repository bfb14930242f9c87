"""openstackclient plugin: `openstack volume snapshot history|nearest|usage` over the catalog API.

Found through the service catalog by its service type (client.SERVICE_TYPE). Depends only on
osc-lib and keystoneauth, never on the service's code.
"""
