"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012), reproduced with every design choice a switch."""
